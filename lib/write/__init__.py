"""WriteTrainSample's file formats: the scale dict, the umami train file and the LUMIN fold file."""
from tracerflow.write.chunk import TrainChunk
from tracerflow.write.fold_file import write_folds
from tracerflow.write.fold_yielder import FoldYielder
from tracerflow.write.scaling import (
    ScaleAccumulator,
    ScaledInputs,
    apply_scaling,
    read_embedded_scale_dict,
    read_scale_dict,
    scale_dict_from_json,
    scale_dict_to_json,
    write_scale_dict,
)
from tracerflow.write.umami_file import (
    UmamiFile,
    read_umami,
    read_umami_names,
    scale_dict_path,
    write_scale_dict_beside,
    write_umami,
)

__all__ = [
    "FoldYielder",
    "ScaleAccumulator",
    "ScaledInputs",
    "TrainChunk",
    "UmamiFile",
    "apply_scaling",
    "read_embedded_scale_dict",
    "read_scale_dict",
    "read_umami",
    "read_umami_names",
    "scale_dict_from_json",
    "scale_dict_path",
    "scale_dict_to_json",
    "write_folds",
    "write_scale_dict",
    "write_scale_dict_beside",
    "write_umami",
]
