"""One Luigi task per stage; each names its config block, enumerates its own instances and
declares its targets, and calls the library to make them."""
from tracerflow.tasks.apply_selections import ApplySelections
from tracerflow.tasks.base import FileTask, H5Target, TracerflowTask
from tracerflow.tasks.build_events import BuildEvents
from tracerflow.tasks.build_graphs import BuildGraphs
from tracerflow.tasks.convert_tfrecords import ConvertTFRecords
from tracerflow.tasks.generate_sample import GenerateSample
from tracerflow.tasks.predict import Predict
from tracerflow.tasks.prepare_sample import PrepareSample
from tracerflow.tasks.resample import Resample
from tracerflow.tasks.train_background import TrainBackgroundGenerator
from tracerflow.tasks.train_fold import TrainFold
from tracerflow.tasks.write_train_sample import WriteTrainSample

#: Every stage in DAG order: ``--until X`` runs the tasks of every stage up to X that the config
#: describes. A new stage is a new task class placed here.
STAGE_CLASSES: tuple[type[TracerflowTask], ...] = (
    GenerateSample, TrainBackgroundGenerator, BuildEvents, BuildGraphs, ApplySelections, Resample, WriteTrainSample, ConvertTFRecords,
    TrainFold, PrepareSample, Predict)
STAGES = tuple(cls.__name__ for cls in STAGE_CLASSES)

# Among the tasks ready to run, luigi starts the one of highest priority: an earlier stage first,
# so a run goes stage by stage (all events files, then all graphs files, ...) in a fixed order.
for _position, _stage in enumerate(STAGE_CLASSES):
    _stage.priority = len(STAGE_CLASSES) - _position

__all__ = ["STAGES", "STAGE_CLASSES", "ApplySelections", "BuildEvents", "BuildGraphs", "ConvertTFRecords", "FileTask",
           "GenerateSample", "H5Target", "Predict", "PrepareSample", "Resample", "TracerflowTask", "TrainBackgroundGenerator", "TrainFold",
           "WriteTrainSample"]
