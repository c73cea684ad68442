"""The file types a gallery, an upload or a calibration set may hold, by extension (lower case,
with the dot). Shared by the search index (:mod:`ian_d2.search.sources`) and the int8 export's
calibration (:mod:`ian_d2.export.quantize`); no imports."""

__all__ = ["IMAGE_EXTENSIONS", "MEDIA_EXTENSIONS", "VIDEO_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
