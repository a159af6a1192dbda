"""WriteTrainSample's file formats: the scale dict, the umami train file and the LUMIN fold file.

Each name is imported from its module on first use (:mod:`tracerflow._lazy`), so importing
one module of this package does not import the others.
"""
from tracerflow._lazy import lazy_exports

_MODULES = {
    ".chunk": ("TrainChunk",),
    ".fold_file": ("write_folds",),
    ".fold_yielder": ("FoldYielder",),
    ".scaling": ("ScaleAccumulator", "ScaledInputs", "apply_scaling", "read_embedded_scale_dict", "read_scale_dict", "scale_dict_from_json", "scale_dict_to_json", "write_scale_dict",),
    ".umami_file": ("UmamiFile", "read_umami", "read_umami_names", "scale_dict_path", "write_scale_dict_beside", "write_umami",),
}

__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = sorted(name for names in _MODULES.values() for name in names)
