"""`siem-gad evaluate`: replay labeled history through a config's jobs and measure the detectors.

`runner.evaluate` trains and scores, `labels` joins event labels to the detectors' items,
`metrics` computes the numbers, `report` writes report.md, metrics.json and the plots.
"""
