"""Model folders the pack reads from (registered with ComfyUI's folder_paths, so extra_model_paths.yaml works)."""
from __future__ import annotations

import os

import folder_paths

MICROCINEMA = "microcinema"
ANIMATEDIFF = "animatediff_models"
NEW_MODULE = "[new untrained module]"
NO_MOTION_MODULE = "none"


def register() -> None:
    for name in (MICROCINEMA, ANIMATEDIFF):
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
        # add_model_folder_path keeps ComfyUI's default extension set for new names only when we give one
        paths, extensions = folder_paths.folder_names_and_paths[name]
        if not extensions:
            folder_paths.folder_names_and_paths[name] = (paths, set(folder_paths.supported_pt_extensions))


def files(name: str) -> list[str]:
    return folder_paths.get_filename_list(name)


def full_path(name: str, filename: str) -> str:
    """Only files listed inside the registered folders resolve (no '../' escapes)."""
    return folder_paths.get_full_path_or_raise(name, filename)


def unlisted(node: str, input_name: str, folder: str, filename, extra: tuple = ()) -> str | None:
    """A message naming node and input when ``filename`` is not one of the folder's listed files (or ``extra``)."""
    if filename is None or filename in extra or filename in files(folder):
        return None
    return f"{node}: input '{input_name}': {filename!r} is not a file in models/{folder}"


def resolve(node: str, input_name: str, folder: str, filename: str) -> str:
    """full_path, with a ValueError that names the node and the input when the file is not there."""
    problem = unlisted(node, input_name, folder, filename)
    if problem:
        raise ValueError(problem)
    try:
        return full_path(folder, filename)
    except FileNotFoundError as exc:  # listed a moment ago, gone now
        raise ValueError(f"{node}: input '{input_name}': {exc}") from exc
