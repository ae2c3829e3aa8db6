"""`loscat-hf label`: the Gradio screens (`app`), the plain-Python session under them (`session`), the
append-only answer file (`log`) and the list of photos to label (`photos`)."""
