"""pgolf.artifact: pack a `QuantizedModel` into a checked, compressed file and account its bytes."""

from pgolf.artifact.budget import BUDGET_BYTES, Budget, check_budget, code_files, count_code_bytes, measure_budget
from pgolf.artifact.codecs import CODEC_CHOICES, CODECS, compress, compress_auto, decompress
from pgolf.artifact.format import ArtifactInfo, artifact_model_bytes, read_artifact, write_artifact
from pgolf.artifact.official import load_official_checkpoint, official_quant_to_model, read_official_int8

__all__ = [
    "BUDGET_BYTES",
    "CODECS",
    "CODEC_CHOICES",
    "ArtifactInfo",
    "Budget",
    "artifact_model_bytes",
    "check_budget",
    "code_files",
    "compress",
    "compress_auto",
    "count_code_bytes",
    "decompress",
    "load_official_checkpoint",
    "measure_budget",
    "official_quant_to_model",
    "read_artifact",
    "read_official_int8",
    "write_artifact",
]
