"""Writing a command's files: paths checked before any work, written whole or not at all."""

import contextlib
import os
import sys
import tempfile

from reflstm.errors import refuse


def writable(path, option, suffix=None, hint=""):
    """`path` (with `suffix` added as NumPy will add it), checked before any work: not a
    directory, in an existing folder where a file can be created."""
    for candidate in (path, path if not suffix or path.endswith(suffix) else path + suffix):
        if os.path.isdir(candidate):
            raise refuse(option, "a file to write", f"{candidate!r}, which is a directory{hint}")
    if suffix and not path.endswith(suffix):
        path += suffix
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise refuse(option, "a path in an existing folder", f"{path!r}")
    can_create_in(folder, option, path)
    return path


def can_create_in(folder, option, path):
    """The only sure test, also for root and read-only file systems: create a file there."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise refuse(option, "a path in a folder where files can be written",
                     f"{path!r} ({error.strerror})") from None


@contextlib.contextmanager
def atomic_output(path):
    """A temporary path beside `path`, renamed to it only when the block succeeds: a failed
    command leaves nothing behind."""
    folder, name = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=os.path.splitext(name)[1])
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def pyplot():
    """matplotlib.pyplot (drawing to files only) and MaxNLocator, or a clear error."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise refuse("matplotlib", "installed for plots (pip install 'reflstm[plot]')",
                     "not installed") from None
    return plt, MaxNLocator


def plot_path(path, option):
    """A plot's path, checked before any work: matplotlib installed, a format it writes."""
    pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    if extension not in formats:
        raise refuse(option, f"an image file ending in one of .{', .'.join(sorted(formats))}",
                     repr(path))
    return writable(path, option)


def progress(done, total):
    """A progress bar on stderr, only on a terminal and only for more than one chunk."""
    if total <= 1 or not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // total
    end = "\n" if done == total else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} chunks", end=end,
          file=sys.stderr, flush=True)
