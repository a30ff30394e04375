"""py_test entry point: runs pytest on the test file named by the first argument."""
import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main(["-p", "no:cacheprovider", "-v", "-rfEs", "--tb=short", sys.argv[1]]))
