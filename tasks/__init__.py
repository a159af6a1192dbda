"""One Luigi task per stage; each declares its HDF5 target and calls the library."""
from tracerflow.tasks.apply_selections import ApplySelections
from tracerflow.tasks.base import H5Target, TracerflowTask
from tracerflow.tasks.build_events import BuildEvents
from tracerflow.tasks.build_graphs import BuildGraphs
from tracerflow.tasks.convert_tfrecords import ConvertTFRecords
from tracerflow.tasks.generate_sample import GenerateSample
from tracerflow.tasks.predict import Predict
from tracerflow.tasks.prepare_sample import PrepareSample
from tracerflow.tasks.resample import Resample
from tracerflow.tasks.train_fold import TrainFold
from tracerflow.tasks.write_train_sample import WriteTrainSample

# The linear chain that ``--until`` names; PrepareSample (samples in predict.samples) runs as part of Predict.
STAGES = ("GenerateSample", "BuildEvents", "BuildGraphs", "ApplySelections", "Resample", "WriteTrainSample",
          "ConvertTFRecords", "TrainFold", "Predict")

__all__ = ["STAGES", "ApplySelections", "BuildEvents", "BuildGraphs", "ConvertTFRecords", "GenerateSample", "H5Target",
           "Predict", "PrepareSample", "Resample", "TracerflowTask", "TrainFold", "WriteTrainSample"]
