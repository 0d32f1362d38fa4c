"""The systems apiphant is measured against, each doing the same JSON echo."""
