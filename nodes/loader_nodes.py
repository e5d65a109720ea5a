"""Loaders: a full MicroCinema checkpoint, and a MicroCinema module applied to any SD1.x/SD2.x MODEL."""
from __future__ import annotations

import folder_paths
from comfy_api.latest import io

from ..microcinema_core import loading
from ..microcinema_core.patching import IncompatibleBaseModel
from . import model_folders as mf
from .inputs import Combo, Widgets

LOADER, APPLY = "MicroCinema Checkpoint Loader", "MicroCinema Apply Module"
IN_MICROCINEMA = f"a file in models/{mf.MICROCINEMA}"

LOADER_WIDGETS = Widgets(LOADER, Combo(
    "ckpt_name", lambda: mf.files(mf.MICROCINEMA), None,
    "A full MicroCinema checkpoint (.safetensors) in models/microcinema.", options_text=IN_MICROCINEMA))
APPLY_WIDGETS = Widgets(
    APPLY,
    Combo("module_name", lambda: [mf.NEW_MODULE] + mf.files(mf.MICROCINEMA), None,
          "MicroCinema module or full checkpoint from models/microcinema. "
          f"'{mf.NEW_MODULE}' starts from zero temporal layers and an AppearNet copied from the model (it then "
          "behaves like the image model frame by frame: for training).", options_text=IN_MICROCINEMA),
    Combo("motion_module", lambda: [mf.NO_MOTION_MODULE] + mf.files(mf.ANIMATEDIFF), None,
          "Optional AnimateDiff v1/v2/v3 motion module (models/animatediff_models) loaded into the temporal "
          "attention layers.", options_text=f"a file in models/{mf.ANIMATEDIFF}"),
)


class MicroCinemaCheckpointLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaCheckpointLoader",
            display_name="MicroCinema Checkpoint Loader",
            category="MicroCinema/loaders",
            description="Loads a full MicroCinema checkpoint (SD UNet + temporal layers + AppearNet, and the text "
            "encoder and VAE when the file has them) from models/microcinema.",
            inputs=LOADER_WIDGETS.inputs(),
            outputs=[io.Model.Output(), io.Clip.Output(), io.Vae.Output()],
        )

    # Names that are not listed files (typos, '../' or absolute paths) are refused before the run: by ComfyUI's
    # combo check, or by this validator on versions without one. A name fed by a link: mf.resolve in execute.
    validate_inputs = LOADER_WIDGETS.validator()

    @classmethod
    def execute(cls, ckpt_name: str) -> io.NodeOutput:
        path = mf.resolve(LOADER, "ckpt_name", mf.MICROCINEMA, ckpt_name)
        try:
            model, clip, vae = loading.load_full_checkpoint(path, folder_paths.get_folder_paths("embeddings"))
        except ValueError as exc:
            raise ValueError(f"MicroCinema Checkpoint Loader, input 'ckpt_name': {exc}") from exc
        return io.NodeOutput(model, clip, vae)


class MicroCinemaApplyModule(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="MicroCinemaApplyModule",
            display_name="MicroCinema Apply Module",
            category="MicroCinema/loaders",
            description="Turns an SD1.x/SD2.x MODEL (with or without LoRAs) into the MicroCinema video model: "
            "adds the temporal layers and AppearNet of a module file, optionally with an AnimateDiff motion module "
            "as temporal attention. Works with the stock samplers.",
            inputs=[
                io.Model.Input("model", tooltip="An SD1.x/SD2.x MODEL, e.g. from Load Checkpoint (LoRAs may be "
                               "applied before or after this node)."),
                *APPLY_WIDGETS.inputs(),
            ],
            outputs=[io.Model.Output()],
        )

    validate_inputs = APPLY_WIDGETS.validator()  # see MicroCinemaCheckpointLoader

    @classmethod
    def execute(cls, model, module_name: str, motion_module: str) -> io.NodeOutput:
        module_path = None if module_name == mf.NEW_MODULE else \
            mf.resolve(APPLY, "module_name", mf.MICROCINEMA, module_name)
        motion_path = None if motion_module == mf.NO_MOTION_MODULE else \
            mf.resolve(APPLY, "motion_module", mf.ANIMATEDIFF, motion_module)
        which = "module_name"  # the input a failure is reported on, by the step that failed
        try:
            module = loading.module_for(model, module_path)
            if motion_path is not None:
                which = "motion_module"
                loading.load_motion_module(module, motion_path)
            patched = loading.apply_module(model, module)
        except ValueError as exc:
            if isinstance(exc, IncompatibleBaseModel):
                which = "model"
            raise ValueError(f"MicroCinema Apply Module, input '{which}': {exc}") from exc
        return io.NodeOutput(patched)
