"""ConvertTFRecords' format: train-file shards as TFRecords plus metadata.json, and tf.data readers.

Writing needs only numpy and h5py; the readers import TensorFlow when called.
"""
from tracerflow.tfrecords.reader import load_metadata, read_tfrecords, shard_paths, tfrecord_dataset
from tracerflow.tfrecords.writer import write_tfrecords

__all__ = ["load_metadata", "read_tfrecords", "shard_paths", "tfrecord_dataset", "write_tfrecords"]
