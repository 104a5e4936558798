"""Models: network factories (MONAI underneath) and tabular scikit-learn pipelines, created by name."""
