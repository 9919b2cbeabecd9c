"""Registry and Manager metadata (no host needed), and the host's own reading of it."""
import ast
import logging
import sys
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


def _python_files(*folders):
    return [REPO / "__init__.py"] + [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))]


def test_the_pack_only_uses_relative_imports_of_itself():
    """Absolute imports of our own modules would break under another folder name."""
    own = {"nodes", "tools", "shapefirst"}
    for path in _python_files("nodes"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] not in own, f"{path.name}: from {node.module} import"
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & own, f"{path.name}: import"


HOST_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "nodes", "folder_paths", "server",
                "execution", "node_helpers", "latent_preview", "utils", "app"}


def _host_imports(path):
    """Top-level names of ComfyUI that ``path`` imports (anywhere in it, functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
        found |= {name.split(".")[0] for name in names} & HOST_MODULES
    return found


def test_host_free_modules_import_nothing_of_comfyui():
    """The host-free rule: the modules listed in nodes/extension.py (each feature's logic) and
    the pack's package files import nothing of ComfyUI; run it alone with
    ``python -m pytest tests/test_packaging.py -k host_free``."""
    tree = ast.parse((REPO / "nodes" / "extension.py").read_text())
    listed = next(ast.literal_eval(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                  and getattr(node.targets[0], "id", None) == "HOST_FREE_MODULES")
    packages = [p.relative_to(REPO).as_posix() for p in (REPO / "nodes").rglob("__init__.py")]
    assert set(packages) <= set(listed), "every feature folder's __init__.py must stay host-free"
    for relative in ["__init__.py", *listed]:
        assert (REPO / relative).is_file(), relative
        assert not _host_imports(REPO / relative), f"{relative} imports {_host_imports(REPO / relative)}"


def test_host_free_tools_import_nothing_of_comfyui():
    for name in ("headless", "registry_host", "workflow_graph", "fuzz_matrix", "pack_loader", "__init__"):
        assert not _host_imports(REPO / "tools" / f"{name}.py"), name


def test_the_shipped_pack_does_not_import_the_tooling():
    """What ComfyUI imports (the top-level __init__ and nodes/) never reaches into tools/."""
    for path in _python_files("nodes"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = (path.parent / ("../" * (node.level - 1))).resolve() / (node.module or "").replace(".", "/")
                assert "tools" not in target.relative_to(REPO.resolve()).parts, f"{path}: imports {node.module}"


@pytest.mark.host
def test_comfyui_reads_the_project_config(host):
    from comfy_config import config_parser
    config = config_parser.extract_node_configuration(str(REPO))
    assert config.project.name == "shapefirst"
    assert config.tool_comfy.display_name == "ShapeFirst"


@pytest.mark.host
def test_a_feature_whose_import_fails_loses_only_its_own_nodes(pack, monkeypatch, caplog):
    """A host without a module that one feature needs (here comfy.text_encoders.sd3_clip, which
    the [EOS] tools import) disables that feature's nodes with one log line; the others register."""
    extension = pack["nodes.extension"]
    every_node = {cls.__name__ for cls in extension.feature_nodes()}
    eos_nodes = {cls.__name__ for cls in pack["nodes.eos_tokens.nodes"].NODES}
    eos_package = pack["nodes.eos_tokens"]
    for name in ("nodes", "conditioning"):  # imported afresh below (`from . import x` reads the attribute)
        monkeypatch.delitem(sys.modules, f"{eos_package.__name__}.{name}")
        monkeypatch.delattr(eos_package, name)
    monkeypatch.setitem(sys.modules, "comfy.text_encoders.sd3_clip", None)  # Python: that import fails
    caplog.set_level(logging.WARNING, logger="ShapeFirst")

    registered = {cls.__name__ for cls in extension.feature_nodes()}

    assert eos_nodes and registered == every_node - eos_nodes
    lines = [record.getMessage() for record in caplog.records if record.name == "ShapeFirst"]
    assert len(lines) == 1, lines
    assert "eos_tokens nodes are disabled" in lines[0] and "comfy.text_encoders.sd3_clip" in lines[0]
