"""Export a task's best model to a `.keras` file and serve its predictions over HTTP.

The best model of the task (the leaderboard winner across singlepath and multipath agents)
is saved as a standalone `.keras` file, loaded back without the store, and served by a
small `http.server` on 127.0.0.1:

    POST /predict   body: one image file (PNG, JPEG, BMP or GIF)
                    reply: {"class_id": 3, "class_name": "3", "probabilities": [...]}
    GET  /          reply: {"task": ..., "path": ..., "inputs": {...}, "class_names": [...]}

Images are preprocessed as in evaluation: converted to RGB, resized bilinearly to each
resolution the model takes, and mapped to [-1, 1].

    python examples/export_and_serve.py --task=digits                  # serve until Ctrl-C
    curl --data-binary @digit.png http://127.0.0.1:8500/predict
    python examples/export_and_serve.py --task=digits --self_test=100  # send 100 test images

`--self_test=N` posts the first N test images of the task to the running server, prints the
accuracy of the replies and stops the server.
"""

import io
import json
import os
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("store", "./store", "Store folder grown by examples/grow_system.py.")
flags.DEFINE_string("task", "digits", "Task whose best model is exported.")
flags.DEFINE_string("output", None, "The .keras file (default: <store>-export/<task>.keras).")
flags.DEFINE_integer("port", 8500, "Port on 127.0.0.1; 0 picks a free one.")
flags.DEFINE_integer("self_test", 0, "Post this many test images to the server, then stop.")
flags.DEFINE_enum("backend", None, ["tensorflow", "jax", "torch"], "Keras backend.")


class Predictor:
    """A loaded `.keras` model plus the preprocessing of its inputs.

    Args:
        model: the loaded `keras.Model`; one image input, or a dict of inputs named by
            resolution (a multipath model).
        class_names: names of the classes, by class id.
    """

    def __init__(self, model, class_names):
        self.model = model
        self.class_names = list(class_names)
        self.inputs = {tensor.name: int(tensor.shape[1]) for tensor in model.inputs}
        self.dict_inputs = isinstance(model.input, dict)

    def predict(self, image_bytes):
        """Return the class id and the probabilities of one encoded image."""
        import keras
        import numpy as np
        import tensorflow as tf

        from keras_multipath.data import preprocess_image, resolve_ds_hparams

        image = tf.io.decode_image(image_bytes, expand_animations=False)
        sizes = sorted(set(self.inputs.values()))
        resized = preprocess_image(image, sizes, resolve_ds_hparams(), training=False)
        by_size = {size: resized[i].numpy()[None] for i, size in enumerate(sizes)}
        if self.dict_inputs:
            batch = {name: by_size[size] for name, size in self.inputs.items()}
        else:
            batch = by_size[sizes[0]]
        logits = keras.ops.convert_to_numpy(self.model(batch))[0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        return int(np.argmax(probabilities)), probabilities


def make_handler(predictor, info):
    """Return the request handler class of the server."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status, document):
            body = json.dumps(document).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - name fixed by BaseHTTPRequestHandler.
            if self.path != "/":
                self._reply(404, {"error": f"Not found: {self.path}. Use GET / or POST /predict."})
                return
            self._reply(200, info)

        def do_POST(self):  # noqa: N802 - name fixed by BaseHTTPRequestHandler.
            if self.path != "/predict":
                self._reply(404, {"error": f"Not found: {self.path}. Use POST /predict."})
                return
            length = int(self.headers.get("Content-Length", 0))
            if length <= 0:
                self._reply(400, {"error": "Missing image: send the image file as the body."})
                return
            try:
                class_id, probabilities = predictor.predict(self.rfile.read(length))
            except Exception as error:  # noqa: BLE001 - any decode error is the client's.
                logging.warning("Invalid image in a /predict request: %s", error)
                self._reply(400, {"error": f"Invalid image: {error}"})
                return
            self._reply(200, {
                "class_id": class_id,
                "class_name": predictor.class_names[class_id],
                "probabilities": [round(float(p), 6) for p in probabilities],
            })

        def log_message(self, format, *args):  # noqa: A002 - signature of the base class.
            logging.info("%s %s", self.address_string(), format % args)

    return Handler


def post_test_images(task, port, count):
    """Post the first `count` test images of `task` to the server; return the accuracy."""
    import numpy as np
    from PIL import Image

    images, labels = task.as_numpy("test")
    count = min(count, len(labels))
    correct = 0
    for image, label in zip(images[:count], labels[:count]):
        buffer = io.BytesIO()
        Image.fromarray(np.squeeze(image, axis=-1) if image.shape[-1] == 1 else image).save(
            buffer, format="PNG")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict",
                                         data=buffer.getvalue(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            reply = json.loads(response.read())
        correct += int(reply["class_id"] == int(label))
    return correct / count


def main(argv):
    del argv
    if FLAGS.backend:
        os.environ["KERAS_BACKEND"] = FLAGS.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    import keras_multipath.layers  # noqa: F401 - registers the layer classes for loading.
    from keras_multipath.data import get_task
    from keras_multipath.system import Store
    from keras_multipath.system.leaderboard import export_best_model

    output = FLAGS.output or os.path.join(f"{FLAGS.store.rstrip('/')}-export",
                                          f"{FLAGS.task}.keras")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    path, _ = export_best_model(Store(FLAGS.store), FLAGS.task, output)
    logging.info("Exported %s (validation accuracy %.4f) to %s.", path.key,
                 path.metrics.get("quality", float("nan")), output)

    # The server needs only the file: no store, no agents.
    model = keras.saving.load_model(output)
    task = get_task(FLAGS.task)
    predictor = Predictor(model, task.class_names)
    info = {"task": task.name, "path": path.key, "file": output,
            "inputs": predictor.inputs, "class_names": predictor.class_names}
    server = ThreadingHTTPServer(("127.0.0.1", FLAGS.port), make_handler(predictor, info))
    port = server.server_address[1]
    print(f"Serving {path.key} on http://127.0.0.1:{port}/predict (POST an image file).")
    if FLAGS.self_test <= 0:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        accuracy = post_test_images(task, port, FLAGS.self_test)
    finally:
        server.shutdown()
        server.server_close()
    stored = path.metrics.get("test_quality")
    print(f"Self-test: accuracy {accuracy:.4f} on {FLAGS.self_test} test images posted "
          f"(stored test accuracy of the path on the whole test split: {stored}).")
    return 0


if __name__ == "__main__":
    app.run(main)
