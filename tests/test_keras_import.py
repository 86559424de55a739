"""Keras is imported without TensorFlow's start-up lines, which it prints twice otherwise."""

import subprocess
import sys

NOISE = ("absl::InitializeLog", "cudart_stub.cc", "Could not find cuda drivers")


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_demo_and_imports_print_no_tensorflow_start_up_lines(tmp_path):
    """The demo (Keras 3) prints nothing on stderr and writes its report; import_keras(2) leaves
    nothing of TensorFlow's."""
    demo = subprocess.run([sys.executable, "-m", "reflstm.demo"], capture_output=True, text=True, cwd=tmp_path)
    assert demo.returncode == 0 and demo.stderr == "", demo.stderr
    assert "wrote reflstm-demo.html" in demo.stdout and (tmp_path / "reflstm-demo.html").stat().st_size > 0
    imports = run_python("from reflstm.frameworks.keras_import import import_keras; import_keras(2)")
    assert imports.returncode == 0 and not any(words in imports.stderr for words in NOISE), imports.stderr


def test_other_lines_written_during_the_import_still_show():
    """Only TensorFlow's known start-up lines are dropped; anything else reaches stderr, in order."""
    result = run_python(
        "import os\n"
        "from reflstm.frameworks.keras_import import _without_tensorflow_noise\n"
        "with _without_tensorflow_noise():\n"
        "    os.write(2, b'W0000 cudart_stub.cc:31] Could not find cuda drivers on your machine.\\n')\n"
        "    os.write(2, b'a real problem\\n')\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called ...\\n')\n"
        "os.write(2, b'after\\n')\n")
    assert result.returncode == 0 and result.stderr == "a real problem\nafter\n", result.stderr
