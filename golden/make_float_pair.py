"""Build a float model and its full-int8 conversion for `microref compare --float` tests.

Run: /path/to/venv-with-tensorflow/bin/python golden/make_float_pair.py  (pip install 'microref[golden]')
Writes golden/float_pair/{float.tflite,int8.tflite,data.npz}. The int8 model keeps int8 at its
edges; data.npz holds real-valued inputs drawn like the calibration data.
"""
import os

import numpy as np
import tensorflow as tf

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "float_pair")


def main():
    tf.random.set_seed(7)
    rng = np.random.default_rng(7)
    inp = tf.keras.Input((12, 12, 3), batch_size=1, name="image")
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = tf.keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6", name="dw1")(x)
    x = tf.keras.layers.Conv2D(6, 1, activation="relu", name="conv2")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = tf.keras.layers.Dense(10, name="dense")(x)
    out = tf.keras.layers.Softmax(name="softmax")(x)
    model = tf.keras.Model(inp, out)
    # Random but non-trivial weights, so every layer carries signal.
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32) for w in ws])
    calib = rng.normal(0, 1, (64, 12, 12, 3)).astype(np.float32)

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    float_bytes = conv.convert()

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([c[None]] for c in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    int8_bytes = conv.convert()

    os.makedirs(HERE, exist_ok=True)
    with open(os.path.join(HERE, "float.tflite"), "wb") as f:
        f.write(float_bytes)
    with open(os.path.join(HERE, "int8.tflite"), "wb") as f:
        f.write(int8_bytes)
    np.savez(os.path.join(HERE, "data.npz"), image=rng.normal(0, 1, (1, 12, 12, 3)).astype(np.float32))
    print("wrote", HERE)


if __name__ == "__main__":
    main()
