"""The app's pages in one list: order, titles, icons, URLs and summaries (app.py routes with it, Home links it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageInfo:
    path: str
    title: str
    icon: str
    url_path: str
    summary: str  # one line on the Home page


HOME = PageInfo(
    "app_pages/home.py", "Home", ":material/home:", "", "What the app is for, this machine, and the digit models."
)
PAGES = (
    PageInfo("app_pages/draw.py", "Draw a digit", ":material/draw:", "draw",
             "Draw on a canvas and watch three MNIST models (a LeNet-style CNN, a VGG-style CNN and a Vision "
             "Transformer) answer side by side, with the exact 28 × 28 input each one sees."),
    PageInfo("app_pages/augment.py", "Augmentation lab", ":material/science:", "augment",
             "Build a torchvision transforms pipeline, preview what it does, export it as code, and probe how far "
             "a digit can be rotated, shifted or blurred before the models give up."),
    PageInfo("app_pages/photo.py", "Photo explorer", ":material/photo_camera:", "photo",
             "Upload a photo: ImageNet top-3, feature maps from early, middle and late layers, first-layer "
             "filters, Grad-CAM, a transformer side by side, and object detection."),
    PageInfo("app_pages/finetune.py", "Fine-tune", ":material/model_training:", "finetune",
             "Train or fine-tune a model on MNIST digits or CIFAR-10 photos in a minute or two, with live charts; save "
             "it, draw on it, or try it on a photo."),
    PageInfo("app_pages/my_classes.py", "My classes", ":material/category:", "my-classes",
             "Name a few classes of your own, add pictures (uploads, a zip or the camera), and train a network on "
             "them in seconds; then try it on new photos."),
    PageInfo("app_pages/compare.py", "Compare", ":material/leaderboard:", "compare",
             "A scoreboard of every model by accuracy, F1, loss, size, training time and latency; architectures, "
             "filters, attention maps, and hyperparameter sweeps."),
)  # fmt: skip
