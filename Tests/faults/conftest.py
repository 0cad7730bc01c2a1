import os
import sys

# The suite's shared module (faults.py) and the Python client (wharf) are imported by path.
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "..", "Clients", "python"))
