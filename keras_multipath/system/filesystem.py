"""The file system operations the store uses, for local folders and remote URLs.

`LocalFileSystem` goes through `os` and makes every write durable (fsync of the file and of its
folder). `GFileSystem` goes through `tf.io.gfile`, which reaches ``gs://``, ``s3://`` and
``hdfs://`` when TensorFlow has the matching plugin; TensorFlow is imported on first use only.
`get_filesystem(root)` picks one from the root's URL scheme.
"""

import contextlib
import os
import re
import shutil

_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


class FileSystem:
    """Interface of the store's file operations; paths are strings joined with `join`.

    Attributes:
        atomic_rename: whether renaming a folder makes all of its files visible at once. When
            False, the store writes a state in place and its manifest, written last, is the
            only commit point.
    """

    atomic_rename = False

    def is_atomic_rename(self, path):
        """Return whether renaming folder `path` makes its files visible at once."""
        return self.atomic_rename

    def join(self, *parts):
        raise NotImplementedError

    def exists(self, path):
        raise NotImplementedError

    def listdir(self, path):
        """Return the entry names of folder `path`, or [] when it does not exist."""
        raise NotImplementedError

    def makedirs(self, path):
        raise NotImplementedError

    def size(self, path):
        raise NotImplementedError

    def read_bytes(self, path):
        raise NotImplementedError

    def open_read(self, path):
        """Return a seekable binary file object for reading `path`."""
        raise NotImplementedError

    def open_write(self, path):
        """Return a context manager with a binary file object; the data is durable on exit."""
        raise NotImplementedError

    def write_bytes(self, path, data):
        with self.open_write(path) as f:
            f.write(data)

    def rename(self, source, target):
        """Rename file or folder `source` to `target`, which must not exist."""
        raise NotImplementedError

    def remove_file(self, path):
        """Delete file `path`; a missing file is not an error."""
        raise NotImplementedError

    def remove_tree(self, path):
        """Delete `path` and everything below it; a missing path is not an error."""
        raise NotImplementedError

    def sync_folder(self, path):
        """Make the entries of folder `path` (creations, renames) durable."""


class LocalFileSystem(FileSystem):
    """Local folders through `os`, with fsync on every write.

    Args:
        atomic_rename: whether the store may publish by renaming a finished folder (True, the
            default, since POSIX renames are atomic). False makes the store use the protocol
            for object stores, which tests use to run it on a local folder.
    """

    def __init__(self, atomic_rename=True):
        self.atomic_rename = atomic_rename

    def join(self, *parts):
        return os.path.join(*parts)

    def exists(self, path):
        return os.path.exists(path)

    def listdir(self, path):
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    def makedirs(self, path):
        os.makedirs(path, exist_ok=True)

    def size(self, path):
        return os.path.getsize(path)

    def read_bytes(self, path):
        with open(path, "rb") as f:
            return f.read()

    def open_read(self, path):
        return open(path, "rb")

    @contextlib.contextmanager
    def open_write(self, path):
        with open(path, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())

    def rename(self, source, target):
        if os.path.exists(target):
            raise FileExistsError(f"Cannot rename {source!r}: the target {target!r} exists.")
        os.rename(source, target)

    def remove_file(self, path):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def remove_tree(self, path):
        shutil.rmtree(path, ignore_errors=True)

    def sync_folder(self, path):
        # Opening a folder read-only and fsyncing it persists its entries on Linux and macOS.
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


class GFileSystem(FileSystem):
    """Any path `tf.io.gfile` understands: local, ``gs://``, ``s3://``, ``hdfs://``.

    Args:
        atomic_rename: whether folder renames are atomic. None (the default) means True for
            local paths and False for URLs, since object stores rename by copying.

    NOTE: the tests run this class on local folders only; no gs:// or s3:// bucket was used.
    """

    def __init__(self, atomic_rename=None):
        self._atomic_rename = atomic_rename
        self._gfile_module = None

    @property
    def _gfile(self):
        if self._gfile_module is None:
            try:
                import tensorflow as tf
            except ImportError as error:
                raise ImportError(
                    "Remote store paths need TensorFlow for tf.io.gfile. Install it with "
                    "`pip install tensorflow`, or use a local folder as the store root."
                ) from error
            self._gfile_module = tf.io.gfile
        return self._gfile_module

    def is_atomic_rename(self, path):
        if self._atomic_rename is not None:
            return self._atomic_rename
        return not _URL_RE.match(path)

    def join(self, *parts):
        return self._gfile.join(*parts)

    def exists(self, path):
        return self._gfile.exists(path)

    def listdir(self, path):
        if not self._gfile.exists(path):
            return []
        # gfile lists sub-folders of object stores with a trailing "/".
        return sorted(name.rstrip("/") for name in self._gfile.listdir(path))

    def makedirs(self, path):
        self._gfile.makedirs(path)

    def size(self, path):
        return self._gfile.stat(path).length

    def read_bytes(self, path):
        with self._gfile.GFile(path, "rb") as f:
            return f.read()

    def open_read(self, path):
        return self._gfile.GFile(path, "rb")

    @contextlib.contextmanager
    def open_write(self, path):
        # GFile.close() flushes; object stores commit an object only when it is closed.
        with self._gfile.GFile(path, "wb") as f:
            yield f
            f.flush()

    def rename(self, source, target):
        if self._gfile.exists(target):
            raise FileExistsError(f"Cannot rename {source!r}: the target {target!r} exists.")
        self._gfile.rename(source, target)

    def remove_file(self, path):
        if self._gfile.exists(path):
            self._gfile.remove(path)

    def remove_tree(self, path):
        if self._gfile.exists(path):
            self._gfile.rmtree(path)


def is_url(path):
    """Return whether `path` starts with a URL scheme such as ``gs://``."""
    return bool(_URL_RE.match(path))


def get_filesystem(root):
    """Return the `FileSystem` for store root `root`: local for paths, gfile for URLs."""
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(
            f"Expected the store root to be a path or URL string. Received: {root!r}"
        )
    root = os.fspath(root)
    if root.startswith("file://"):
        return LocalFileSystem()
    if is_url(root):
        return GFileSystem()
    return LocalFileSystem()
