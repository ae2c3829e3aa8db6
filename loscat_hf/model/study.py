"""The LoSCAT study's published model, as its own code describes it (github caoyuanyuan-tz/LoSCAT_BodyRec,
models/vit_12cls.py and scripts/inference_predict.py): one place for these facts."""

STUDY_CODE_REPO = "caoyuanyuan-tz/LoSCAT_BodyRec"  # on GitHub: inference and evaluation scripts
STUDY_WEIGHTS_REPO = "cyycn20000509/loscat-body-region-classifier"  # on the Hub
STUDY_CHECKPOINT = f"{STUDY_WEIGHTS_REPO}/best_12cls_vit.pt"  # the file the study's README links
STUDY_ARCH = "vit_base_patch16_384"  # timm.create_model(..., num_classes=12), loaded strictly
# output order of the head; the codes are synonyms in the taxonomy (resources/taxonomy.json)
STUDY_CLASS_CODES = ("SCFA", "NECK", "CHEST", "ABDM", "UBCK", "LBCK", "ARM", "FRM", "HND", "THI", "LEG", "FT")
# its preprocessing: Resize((384, 384), BICUBIC), ToTensor, Normalize(ImageNet mean, std)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BICUBIC = 3  # PIL.Image.Resampling.BICUBIC
