import os
import sys

# The Python client (wharf.testing) is imported by path.
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "Clients", "python"))
