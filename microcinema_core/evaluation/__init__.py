"""Scoring generated videos: FVD (I3D features) and CLIPSIM, and the paper's UCF-101 / MSR-VTT protocols.

Modules (none imports ComfyUI; transformers is only needed for CLIPSIM with a Hugging Face CLIP folder):

* ``i3d``: the Inception-v1 I3D network, with the parameter names of the public PyTorch port's checkpoints, and
  reading its weights from safetensors or weights-only torch files;
* ``fvd``: I3D input preprocessing, clip features and the Fréchet distance;
* ``clipsim``: CLIP's image preprocessing, a small encoder protocol, the Hugging Face CLIP adapter and CLIPSIM;
* ``video_io``: reading a video's frames (PyAV) and picking the clip FVD scores;
* ``protocols``: the (prompt, real clip) lists of the UCF-101 and MSR-VTT protocols, and manifests.

``python -m microcinema_core.evaluate`` is the command line; docs/evaluation.md the guide.
"""
from __future__ import annotations


class InputError(Exception):
    """Bad user input (a missing or unreadable file, an empty folder, a malformed annotation file). The message
    names the file and says what is wrong; the command line prints it and exits with status 2."""


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes (reports record which weights produced a number)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
