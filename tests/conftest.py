import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored after): the 2-core CI machine runs the suite alone."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def pytest_report_header(config):
    return f"torch {torch.__version__}, MNFN_DATA={os.environ.get('MNFN_DATA')}"
