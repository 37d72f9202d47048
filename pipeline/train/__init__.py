"""The GPT trainer: model.py (the network), data.py (token blocks from the shards), train.py (the loop), sample.py."""
