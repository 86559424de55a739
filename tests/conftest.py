import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_addoption(parser):
    parser.addoption(
        "--campaign",
        type=int,
        default=0,
        help="run the long differential campaign against Keras with this many configurations",
    )
