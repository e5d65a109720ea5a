"""The usual install path: the pack in a user's ComfyUI/custom_nodes/, the demo models installed with the README's
command, an example workflow from the template browser run as shipped.

The end-to-end test copies the real ComfyUI under test into a temp folder the way a user has it (no link to this
checkout, no extra_model_paths.yaml, no other packs), puts a copy of the pack's files there (tracked plus
untracked-not-ignored: the working tree as it would be committed), runs scripts/install_demo_models.py from that
ComfyUI folder without COMFYUI_PATH, then starts that ComfyUI's main.py and runs text_to_video as the template
browser serves it, through POST /prompt. The other tests check the pieces quickly: where comfy_env looks for
ComfyUI (symlinks included) and what the installer does with files already there.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.locations import PACK_NAME, REPO_ROOT, SessionDirs, comfyui_path
from harness.server import HOST, ComfyServer, free_port, server_env
from harness.ui_workflow import ui_to_api
from pack_import import sub

INSTALL_SCRIPT = Path("custom_nodes") / PACK_NAME / "scripts" / "install_demo_models.py"
DEMO_FILES = ("models/checkpoints/microcinema_demo_sd15.safetensors",
              "models/microcinema/microcinema_demo_module.safetensors",
              "input/microcinema_example_keyframe.png")
WORKFLOW = "text_to_video"


# -- where comfy_env looks for ComfyUI ------------------------------------------------------------------------
def _fake_comfyui(folder: Path) -> Path:
    (folder / "comfy").mkdir(parents=True)
    (folder / "main.py").write_text("")
    (folder / "custom_nodes").mkdir()
    return folder


def _load_comfy_env(pack_dir: Path):
    """comfy_env.py imported from ``pack_dir`` as that path spells it (a link stays a link, as in Python's import)."""
    path = pack_dir / "microcinema_core" / "comfy_env.py"
    spec = importlib.util.spec_from_file_location(f"mc_comfy_env_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_comfyui_path_finds_the_comfyui_the_pack_is_installed_in(tmp_path, monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    checkout = tmp_path / "checkout"
    (checkout / "microcinema_core").mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "microcinema_core" / "comfy_env.py", checkout / "microcinema_core" / "comfy_env.py")
    bootstrap_comfy = tmp_path / "bootstrap-comfy"
    (checkout / ".comfyui").mkdir()
    (checkout / ".comfyui" / "comfyui_path.txt").write_text(f"{bootstrap_comfy}\n")

    # the development checkout, imported from where it is: bootstrap's record, as before
    assert _load_comfy_env(checkout).comfyui_path() == bootstrap_comfy
    # linked into a ComfyUI's custom_nodes/ (what bootstrap does): that ComfyUI, found through the link
    user_comfy = _fake_comfyui(tmp_path / "ComfyUI")
    (user_comfy / "custom_nodes" / PACK_NAME).symlink_to(checkout)
    assert _load_comfy_env(user_comfy / "custom_nodes" / PACK_NAME).comfyui_path() == user_comfy
    # a custom_nodes folder that is not inside a ComfyUI (bootstrap's .comfyui/custom_nodes): the record
    (checkout / ".comfyui" / "custom_nodes").mkdir()
    (checkout / ".comfyui" / "custom_nodes" / PACK_NAME).symlink_to(checkout)
    assert _load_comfy_env(checkout / ".comfyui" / "custom_nodes" / PACK_NAME).comfyui_path() == bootstrap_comfy
    # a copy inside a ComfyUI whose entry point is folder_paths.py only: found, and no record needed
    other = _fake_comfyui(tmp_path / "other" / "ComfyUI")
    (other / "main.py").unlink()
    (other / "folder_paths.py").write_text("")
    copied = other / "custom_nodes" / "MicroCinema"
    shutil.copytree(checkout / "microcinema_core", copied / "microcinema_core")
    assert _load_comfy_env(copied).comfyui_path() == other
    # COMFYUI_PATH still wins
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path))
    assert _load_comfy_env(copied).comfyui_path() == tmp_path.resolve()


# -- what the installer does with files already there ---------------------------------------------------------
class FakeBuild:
    """Writes two small safetensors files the way demo.write_demo_files does (metadata with the build key)."""

    def __init__(self, build_key: str, fingerprint: str, value: float = 1.0) -> None:
        self.build_key, self.fingerprint, self.value, self.calls = build_key, fingerprint, value, 0

    def __call__(self, checkpoint_path: Path, module_path: Path) -> None:
        import torch
        from safetensors.torch import save_file

        self.calls += 1
        for path, name in ((checkpoint_path, "unet.w"), (module_path, "appearnet.w")):
            save_file({name: torch.full((4, 4), self.value), "b": torch.arange(3)}, str(path),
                      metadata={"note": "fake", self.build_key: self.fingerprint})


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_installer_is_idempotent_and_never_overwrites(tmp_path):
    install = sub("demo_install")
    key = sub("demo").BUILD_KEY
    targets = {"checkpoint": tmp_path / "checkpoints" / "demo.safetensors",
               "module": tmp_path / "microcinema" / "module.safetensors"}

    build = FakeBuild(key, "fp1")
    assert install.install(targets, build=build, fingerprint="fp1") == {"checkpoint": "installed",
                                                                         "module": "installed"}
    assert build.calls == 1 and all(t.is_file() for t in targets.values())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["demo.safetensors"]  # no staging left
    before = {k: _stat(t) for k, t in targets.items()}

    # the same build: recognised from the metadata, nothing built
    assert install.install(targets, build=build, fingerprint="fp1") == {"checkpoint": "up to date",
                                                                         "module": "up to date"}
    assert build.calls == 1
    # a new fingerprint (a pack update that changes no weights): built, compared, found equal, left alone
    rebuilt = FakeBuild(key, "fp2")
    assert install.install(targets, build=rebuilt, fingerprint="fp2") == {"checkpoint": "up to date",
                                                                          "module": "up to date"}
    assert rebuilt.calls == 1 and {k: _stat(t) for k, t in targets.items()} == before

    # other weights under the demo's name: refused, naming the file; nothing written, not even the missing file
    targets["checkpoint"].unlink()
    with pytest.raises(install.DemoFileConflict) as refused:
        install.install(targets, build=FakeBuild(key, "fp3", value=2.0), fingerprint="fp3")
    assert refused.value.paths == [targets["module"]] and str(targets["module"]) in str(refused.value)
    assert "earlier build of the demo" in str(refused.value)
    assert not targets["checkpoint"].exists() and _stat(targets["module"]) == before["module"]
    # a file that is not safetensors at all
    targets["module"].write_bytes(b"mine")
    with pytest.raises(install.DemoFileConflict, match="module.safetensors already exists"):
        install.install(targets, build=build, fingerprint="fp1")
    assert targets["module"].read_bytes() == b"mine" and not targets["checkpoint"].exists()

    # plain files (the example keyframe): copied once, the same bytes are up to date, others refused
    source = tmp_path / "keyframe.png"
    source.write_bytes(b"png")
    target = tmp_path / "input" / "keyframe.png"
    assert install.install_file(source, target) == "installed" and target.read_bytes() == b"png"
    assert install.install_file(source, target) == "up to date"
    target.write_bytes(b"another picture")
    with pytest.raises(install.DemoFileConflict):
        install.install_file(source, target)
    assert target.read_bytes() == b"another picture"


# -- the whole path ---------------------------------------------------------------------------------------------
def _copy_comfyui(source: Path, target: Path) -> None:
    """The ComfyUI as a user has it: no link to this pack, no other packs, no extra_model_paths.yaml. Its
    models/, input/ and output/ folders start empty: a checkout given by COMFYUI_PATH may hold real models, or
    links to them, that a test must neither copy nor write into."""
    fresh = {"models", "input", "output", "user", "temp"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {"__pycache__", ".git"} & set(names)
        if Path(folder) == source:
            skipped |= ({"extra_model_paths.yaml"} | fresh) & set(names)
        if Path(folder) == source / "custom_nodes":  # keep ComfyUI's own example files, drop every pack
            skipped |= {n for n in names if (Path(folder) / n).is_dir() or (Path(folder) / n).is_symlink()}
        return skipped

    shutil.copytree(source, target, ignore=ignore, symlinks=True)
    for name in ("input", "output"):
        (target / name).mkdir()
    for folder in (source / "models").iterdir():  # the empty model folders of a fresh clone
        if folder.is_dir():
            (target / "models" / folder.name).mkdir(parents=True, exist_ok=True)


def _copy_pack(target: Path) -> None:
    """The files a clone of this working tree would have: tracked ones and untracked ones git does not ignore."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, check=True,
                                capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the pack is not a git checkout here ({exc})")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not listed as such
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _user_env() -> dict[str, str]:
    env = server_env()
    for name in ("COMFYUI_PATH", "PYTHONPATH"):
        env.pop(name, None)
    return env


def _install(comfy: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(INSTALL_SCRIPT)], cwd=comfy, env=_user_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"{INSTALL_SCRIPT} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _start_server(comfy: Path) -> ComfyServer:
    """`python main.py` in the user's ComfyUI with its own folders: only what keeps a test server local and quiet."""
    port = free_port()
    cmd = [sys.executable, "main.py", "--cpu", "--listen", HOST, "--port", str(port), "--disable-auto-launch",
           "--disable-api-nodes"]
    env = _user_env()
    # one intra-op thread: on a small CPU shared with other test processes a second OpenMP thread makes these tiny
    # models several times slower (pack_import.single_thread_fixture); the results are the same
    env.setdefault("OMP_NUM_THREADS", "1")
    return ComfyServer.launch(cmd, port, SessionDirs(root=comfy), comfy, env)


def _saved_files(run, comfy: Path) -> dict[str, list[Path]]:
    files = {}
    for node_id, output in run.outputs.items():
        items = [i for key in ("images", "gifs", "videos") for i in output.get(key, []) if isinstance(i, dict)]
        files[node_id] = [comfy / i.get("type", "output") / i.get("subfolder", "") / i["filename"] for i in items]
    return files


def _mp4_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def _webp_frames(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "WEBP"
        return getattr(image, "n_frames", 1)


@pytest.mark.server
def test_usual_install_runs_an_example_workflow(tmp_path_factory):
    started = time.monotonic()
    comfy = tmp_path_factory.mktemp("user") / "ComfyUI"
    _copy_comfyui(comfyui_path(), comfy)
    _copy_pack(comfy / "custom_nodes" / PACK_NAME)
    assert not (comfy / "extra_model_paths.yaml").exists()
    assert not any((comfy / "models" / "checkpoints").glob("*.safetensors"))

    first = _install(comfy)
    output = first.stdout + first.stderr
    for name in DEMO_FILES:
        assert (comfy / name).is_file(), f"{name} not installed:\n{output[-3000:]}"
        assert f"installed  {comfy / name}" in output
    stats = {name: _stat(comfy / name) for name in DEMO_FILES}
    second = _install(comfy)  # idempotent, and fast: the files are recognised without a rebuild
    output = second.stdout + second.stderr
    assert output.count("up to date") == len(DEMO_FILES) and "building" not in output, output[-3000:]
    assert {name: _stat(comfy / name) for name in DEMO_FILES} == stats
    installed_at = time.monotonic()

    server = _start_server(comfy)
    try:
        status, workflow = server.request("GET", f"/api/workflow_templates/{PACK_NAME}/{WORKFLOW}.json")
        assert status == 200, workflow
        prompt = ui_to_api(workflow, server.object_info())
        run = server.run(prompt, timeout=600)
        assert run.succeeded, f"{run.events('execution_error')}\n{server.log_tail()}"
    finally:
        server.stop()
    savers = {i: n for i, n in prompt.items() if n["class_type"] in ("SaveVideo", "SaveAnimatedWEBP")}
    assert {n["class_type"] for n in savers.values()} == {"SaveVideo", "SaveAnimatedWEBP"}
    length = next(n["inputs"]["length"] for n in prompt.values() if n["class_type"] == "MicroCinemaImageToVideo")
    saved = _saved_files(run, comfy)
    for node_id, node in savers.items():
        assert len(saved.get(node_id, [])) == 1, (node_id, run.outputs)
        path = saved[node_id][0]
        assert path.is_file() and path.is_relative_to(comfy / "output"), path
        frames = _mp4_frames(path) if node["class_type"] == "SaveVideo" else _webp_frames(path)
        assert frames == length, (path, frames)
    print(f"install {installed_at - started:.1f} s, server + workflow {time.monotonic() - installed_at:.1f} s")
    shutil.rmtree(comfy.parent, ignore_errors=True)  # 400 MB; a failed run keeps its tree (and server log) to look at
