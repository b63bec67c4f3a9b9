"""pgolf.artifact: pack a `QuantizedModel` into a checked, compressed file and account its bytes.

The names below resolve on first use, so importing one artifact module does not import the others
(the official-format reader, for one, ships only with the runs that use it).
"""

from typing import TYPE_CHECKING

from pgolf.lazy import lazy_exports

if TYPE_CHECKING:  # the static view of the lazy names below
    from pgolf.artifact.auto import compress_auto
    from pgolf.artifact.budget import BUDGET_BYTES, Budget, check_budget, count_code_bytes
    from pgolf.artifact.codecs import CODEC_CHOICES, CODECS, compress, decompress
    from pgolf.artifact.format import ArtifactInfo, artifact_model_bytes, read_artifact, write_artifact
    from pgolf.artifact.imported_code import code_files, measure_budget
    from pgolf.artifact.official import load_official_checkpoint, official_quant_to_model, read_official_int8

_EXPORTS = {
    **dict.fromkeys(("BUDGET_BYTES", "Budget", "check_budget", "count_code_bytes"), "budget"),
    **dict.fromkeys(("code_files", "measure_budget"), "imported_code"),
    **dict.fromkeys(("CODEC_CHOICES", "CODECS", "compress", "decompress"), "codecs"),
    "compress_auto": "auto",
    **dict.fromkeys(("ArtifactInfo", "artifact_model_bytes", "read_artifact", "write_artifact"), "format"),
    **dict.fromkeys(("load_official_checkpoint", "official_quant_to_model", "read_official_int8"), "official"),
}
__all__ = [
    "BUDGET_BYTES", "CODECS", "CODEC_CHOICES", "ArtifactInfo", "Budget", "artifact_model_bytes", "check_budget",
    "code_files", "compress", "compress_auto", "count_code_bytes", "decompress", "load_official_checkpoint",
    "measure_budget", "official_quant_to_model", "read_artifact", "read_official_int8", "write_artifact",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
