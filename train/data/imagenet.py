"""ImageNet 2012 from tensorflow-datasets (prepared from the manual archives) with the ResNet crops."""
from __future__ import annotations

import os

import tensorflow as tf

from train.data.base import Source, Spec, default_data_dir, register, tfds_split
from train.data.pipeline import Parts, num_held_out, size

_IMAGENET_SHUFFLE_BUFFER = 10_000


def load_parts(name: str, spec: Spec, source: Source) -> Parts:
    """ImageNet 2012 from tensorflow-datasets, prepared from the manually downloaded archives."""
    import tensorflow_datasets as tfds

    root = source.data_dir or default_data_dir()
    manual_dir = source.manual_dir or os.path.join(root, "downloads", "manual")
    builder = tfds.builder("imagenet2012", data_dir=root)
    archives = [os.path.join(manual_dir, f) for f in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")]
    if not builder.is_prepared() and all(os.path.isfile(a) for a in archives):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    read = dict(
        decoders={"image": tfds.decode.SkipDecoding()},
        # Files in a fixed order (tfds shuffled the records when it prepared them); each epoch
        # permutes windows of them by seeds from (seed, epoch), so a resumed epoch replays exactly.
        shuffle_files=False,
    )
    how = (
        f"Put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from https://image-net.org, registration "
        f"needed) in {manual_dir} (or pass manual_dir); the next load prepares them (hours, ~150 GB)."
    )
    full = tfds_split(builder, "train", how, **read)
    n = size(full)
    n_val = num_held_out(n, source.validation_split)
    n_train = n - n_val if source.train_limit is None else min(source.train_limit, n - n_val)
    train = full if n_train == n else tfds_split(builder, f"train[:{n_train}]", how, **read)
    validation = None
    if n_val:
        validation = tfds_split(builder, f"train[{n - n_val}:]", how, decoders=read["decoders"])
    return Parts(
        train=train,
        test=tfds_split(builder, "validation", how, decoders=read["decoders"]),
        validation=validation,
        shuffle_buffer=_IMAGENET_SHUFFLE_BUFFER,
        decode_train=_imagenet_train_image,
        decode_eval=_imagenet_eval_image,
        source=f"tfds:{builder.data_dir}",
    )


def _imagenet_train_image(jpeg: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """ResNet training crop: random area 8-100 % and aspect 3/4-4/3, resized to 224, random flip."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.image.extract_jpeg_shape(jpeg),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=crop_seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = tf.image.resize(image, [224, 224], antialias=True)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def _imagenet_eval_image(jpeg: tf.Tensor) -> tf.Tensor:
    """ResNet evaluation crop: shorter side resized to 256, then the central 224x224."""
    image = tf.io.decode_jpeg(jpeg, channels=3)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new_hw = tf.cast(tf.round(hw * 256.0 / tf.reduce_min(hw)), tf.int32)
    image = tf.image.resize(image, new_hw, antialias=True)
    top, left = (new_hw[0] - 224) // 2, (new_hw[1] - 224) // 2
    return image[top: top + 224, left: left + 224]


register("imagenet2012", Spec(1000, (224, 224, 3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0, load_parts))
