"""Registry and Manager metadata (no host needed), and the host's own reading of it."""
import ast
import json
import logging
import subprocess
import sys
import tomllib
import zipfile

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


# ---------------------------------------------------------------- the Registry archive

ARCHIVE_MUST_HOLD = ("__init__.py", "pyproject.toml", "requirements.txt", "LICENSE", "README.md", "nodes/extension.py",
                     "nodes/demo_models/weights/unet.safetensors", "nodes/demo_models/weights/clip.safetensors",
                     "nodes/demo_models/weights/vae.safetensors", "js/frequency_chart.js")
ARCHIVE_MUST_NOT_HOLD = ("tests/", "tools/", "docs/", ".ci/")


def _build_archive(zip_path):
    """The archive as ``comfy node pack`` builds it: comfy-cli's own zip function, run in the
    repository (git-tracked files minus .comfyignore, plus the pyproject's `includes`)."""
    comfy_cli = pytest.importorskip("comfy_cli.file_utils", reason="comfy-cli is not installed (.ci/run installs it)")
    includes = _pyproject()["tool"]["comfy"].get("includes", [])
    code = ("import sys; from comfy_cli.file_utils import zip_files; "
            f"zip_files(sys.argv[1], includes={includes!r})")
    done = subprocess.run([sys.executable, "-c", code, str(zip_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and comfy_cli, done.stdout + done.stderr
    with zipfile.ZipFile(zip_path) as archive:
        return archive.namelist()


_LOAD_AND_LIST = """
import asyncio, json, os, sys
host, folder = sys.argv[1], sys.argv[2]
sys.path.insert(0, host)
import comfy.cli_args
comfy.cli_args.args.cpu = True
import nodes
os.chdir(os.path.dirname(folder))
assert asyncio.run(nodes.load_custom_node(os.path.basename(folder))), "the host failed to load the archive"
print(json.dumps(sorted(k for k in nodes.NODE_CLASS_MAPPINGS if k.startswith("ShapeFirst"))))  # no other pack loaded
"""


@pytest.mark.host
def test_the_registry_archive_holds_what_runs_and_loads_in_the_host(host, pack, tmp_path):
    """The archive holds the pack's runtime files and none of the development ones; unpacked into
    a ComfyUI's custom_nodes it registers every node the repository registers, and ComfyUI's
    import smoke test (`main.py --cpu --quick-test-for-ci`) loads it without a failure."""
    names = _build_archive(tmp_path / "node.zip")
    for name in ARCHIVE_MUST_HOLD:
        assert name in names, name
    assert not [n for n in names if n.startswith(ARCHIVE_MUST_NOT_HOLD)]
    assert [n for n in names if n.startswith("example_workflows/") and n.endswith(".json")]

    base = tmp_path / "comfyui_base"
    folder = base / "custom_nodes" / "ShapeFirst"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "node.zip") as archive:
        archive.extractall(folder)

    listed = subprocess.run([sys.executable, "-c", _LOAD_AND_LIST, str(host), str(folder)], capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-4000:]
    registered = set(json.loads(listed.stdout.strip().splitlines()[-1]))
    expected = {cls.define_schema().node_id for cls in pack["nodes.extension"].feature_nodes()}
    assert expected and registered == expected, (expected - registered, registered - expected)

    smoke = subprocess.run([sys.executable, str(host / "main.py"), "--cpu", "--quick-test-for-ci",
                            "--base-directory", str(base), "--disable-all-custom-nodes",
                            "--whitelist-custom-nodes", "ShapeFirst"],
                           cwd=host, capture_output=True, text=True, timeout=300)
    log = smoke.stdout + smoke.stderr
    assert smoke.returncode == 0, log[-4000:]
    loaded = [line for line in log.splitlines() if "seconds" in line and line.rstrip().endswith(str(folder))]
    assert loaded, log[-4000:]  # the import-times line of the pack, without "(IMPORT FAILED)"
    assert "nodes are disabled" not in log, log[-4000:]


# ---------------------------------------------------------------- the README and docs/ pages

def _anchors(markdown):
    """GitHub's heading anchors of a markdown text (lower case, punctuation dropped, spaces to -)."""
    import re
    found = set()
    for line in markdown.splitlines():
        if m := re.match(r"^#{1,6} (.*)$", line):
            found.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return found


def test_readme_and_docs_links_and_anchors_resolve():
    """Every relative link of the README and the docs/ pages names a file of the repository, and
    every #anchor a heading of its page."""
    import re
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
    assert len((REPO / "README.md").read_text().splitlines()) <= 300, "the README is the front page: 300 lines at most"
