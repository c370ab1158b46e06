"""A FiftyOne remote model source for SAM 3: `foz.register_zoo_model_source(<this repo>)`,
then `foz.load_zoo_model("facebook/sam3", classes=[...])`. Needs `pip install sam3-tools`."""

from sam3_fiftyone.zoo import download_model, load_model

__all__ = ["download_model", "load_model"]
