"""fedlearn: federated LTV scoring with vertically partitioned logistic regression."""

__version__ = "0.1.0"
