"""Stage 1, data: rater exports -> consensus labels -> de-identified, patient-split imagefolder.

Reading exports (annotations, score tables, CSV safety), image decoding, agreement, patient splits,
packing and the packed-dataset reader. Imports only the taxonomy and errors: never a model.
"""
