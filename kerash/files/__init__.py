"""Tensor files: reading and writing tensors (text, npy, kerash's chunked text), labels, and the file system.

tensorio reads and writes tensors; textformat is its exact text parser and
writer; labels reads class labels (numbers or words); fs holds atomic files
and folders, regular-file opens and locks; workdir is the RAM work folder.
"""
