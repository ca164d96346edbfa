"""The models wing: propensity models (``propensity``, ``evaluate``), the MLflow registry and promotion rule
(``registry``), a table a user brings (``tables``), customer value (``value``, ``value_baseline``,
``value_training``), uplift (``uplift``, ``uplift_metrics``, ``uplift_training``, ``uplift_tables``) and segments
(``segmentation``, ``personas``). Imports data and features."""
