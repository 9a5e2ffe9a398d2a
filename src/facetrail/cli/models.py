"""The face model's files: converting dlib's ResNet to ONNX and checking the conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facetrail.cli.common import JsonOption, emit_json, out, run
from facetrail.errors import FacetrailError

models_app = typer.Typer(no_args_is_help=True, help="The face model: convert dlib's ResNet to ONNX and check it.")

EQUIVALENCE_TOLERANCE = 1e-5
"""Largest difference allowed between a component of dlib's descriptor and ONNX Runtime's."""
CHECK_CHIPS = 4


@models_app.command("convert")
def convert(
    output: Annotated[Path, typer.Argument(help="Where to write the ONNX model (an existing file is replaced).")],
    json_output: JsonOption = False,
) -> None:
    """Convert the installed dlib ResNet (face_recognition_models) to ONNX and check it against dlib.

    facetrail converts the weights in memory whenever it loads the model; this writes the same graph to a file, for
    inspection or another runtime. The check runs dlib and ONNX Runtime on the same chips and fails (exit 2) if any
    component differs by more than 1e-5. No model hub is involved: the weights come from the installed package.
    """

    def body() -> dict:
        import face_recognition_models as weights

        from facetrail.engine.onnx_resnet import convert_dat_file, file_sha256

        source = Path(weights.face_recognition_model_location())
        model_bytes = convert_dat_file(source)
        difference = _largest_difference(model_bytes)
        if difference > EQUIVALENCE_TOLERANCE:
            raise FacetrailError(f"the conversion differs from dlib by {difference:.2e} (> {EQUIVALENCE_TOLERANCE:g}); nothing written")
        partial = output.with_name(output.name + ".partial")
        partial.write_bytes(model_bytes)
        partial.replace(output)
        return {
            "source": str(source), "source_sha256": file_sha256(source),
            "output": str(output), "output_bytes": len(model_bytes), "output_sha256": file_sha256(output),
            "check_chips": CHECK_CHIPS, "largest_difference_from_dlib": difference,
        }

    report = run(body)
    if json_output:
        emit_json(report)
        return
    out.print(f"converted {report['source']} (sha256 {report['source_sha256'][:16]}…)")
    out.print(f"wrote {report['output']}: {report['output_bytes']:,} bytes, sha256 {report['output_sha256'][:16]}…")
    out.print(f"largest difference from dlib on {CHECK_CHIPS} chips: {report['largest_difference_from_dlib']:.2e}")


def _largest_difference(model_bytes: bytes) -> float:
    """Largest absolute difference between dlib's descriptors and the ONNX model's, on seeded random chips."""
    import numpy as np
    import onnxruntime

    from facetrail.engine.models import DlibResNetModel
    from facetrail.engine.onnx_resnet import INPUT_NAME

    chips = np.random.default_rng(0).integers(0, 256, (CHECK_CHIPS, 150, 150, 3), dtype=np.uint8)
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    converted = session.run(None, {INPUT_NAME: chips})[0]
    reference = DlibResNetModel().embed(list(chips))
    return float(np.abs(converted - reference).max())


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
