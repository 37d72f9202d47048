"""The tokenizer and tokenize global stages, with their pieces: tokenizer.py (the stage that trains a sentencepiece
model on a bottom-k sample of the documents or copies a given one; sampling and training as pure functions),
tokenize.py (the stage that writes token shards; encoding and the train/validation split), files.py (a
sentencepiece model or a Hugging Face tokenizer.json behind one interface), runner.py (both stages on Ray) and
tasks.py (the tokenize task, in a module that imports no Ray Data, so that a fresh worker starts it quickly).
The shards' format, which the trainer reads too, is pipeline/token_shards.py.
"""
