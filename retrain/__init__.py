"""Pure machine learning for cltool: rows to datasets, replay sampling, fine-tuning, evaluation.

Knows nothing of MLflow, schedules or inbox files. Importing it loads no model and starts nothing.
"""
