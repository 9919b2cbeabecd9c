"""Registry and Manager metadata (no host needed), and the host's own reading of it."""
import ast
import tomllib

import pytest

from conftest import REPO

FORBIDDEN = {"torch", "torchvision", "torchaudio", "torchsde"}


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirements():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_registry_fields():
    project, comfy = _pyproject()["project"], _pyproject()["tool"]["comfy"]
    assert project["name"] == "shapefirst"
    assert project["version"] and project["description"] and project["license"]
    assert project["urls"]["Repository"].startswith("https://")
    for key in ("PublisherId", "DisplayName", "Icon", "requires-comfyui"):
        assert comfy[key], key
    assert (REPO / "LICENSE").read_text().startswith("                    GNU GENERAL PUBLIC LICENSE")
    assert (REPO / comfy["Icon"].split("/main/", 1)[1]).exists()


def test_dependencies_equal_requirements_and_leave_torch_to_comfyui():
    dependencies = _pyproject()["project"]["dependencies"]
    assert dependencies == _requirements()
    names = {d.split("=")[0].split(">")[0].split("<")[0].strip().lower() for d in dependencies}
    assert not names & FORBIDDEN


def test_the_pack_only_uses_relative_imports_of_itself():
    """Absolute imports of our own modules would break under another folder name."""
    own = {"nodes", "shapefirst_core"}
    for path in [REPO / "__init__.py", *(REPO / "nodes").glob("*.py"), *(REPO / "shapefirst_core").glob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] not in own, f"{path.name}: from {node.module} import"
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & own, f"{path.name}: import"


def test_shapefirst_core_imports_nothing_of_comfyui():
    host_modules = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "nodes", "folder_paths", "server",
                    "execution", "node_helpers", "latent_preview"}
    for path in (REPO / "shapefirst_core").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                assert name.split(".")[0] not in host_modules, f"{path.name} imports {name}"


@pytest.mark.host
def test_comfyui_reads_the_project_config(host):
    from comfy_config import config_parser
    config = config_parser.extract_node_configuration(str(REPO))
    assert config.project.name == "shapefirst"
    assert config.tool_comfy.display_name == "ShapeFirst"
