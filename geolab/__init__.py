"""The lab: training pairs from the synthetic world (`pairs.py`), training the demo GeoBridge
(`train.py`), ablations (`ablation.py`), and the evaluation of a bundle through the engine
(`evaluate.py`) with the paper's metrics (`metrics.py`).

It may import the engine (`geobridge_qgis.core`), the exporter (`model_export`) and the world
(`synthworld`); none of them imports it.
"""
