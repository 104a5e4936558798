"""Training: nested cross-validation for tabular models, Lightning modules and callbacks for images."""
