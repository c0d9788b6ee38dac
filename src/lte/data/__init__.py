"""Data: image reading, the paper's random-scale sampling, data sets and the LightningDataModule."""
