"""The analytics layer: segmentation, prediction and report computations over a shop's history.
Heavy (numpy, scipy, pandas): loaded by the analytics jobs only, never on a request path."""
