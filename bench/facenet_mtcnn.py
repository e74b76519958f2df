"""facenet-pytorch 2.6's MTCNN with the weights in ../shared/models/mtcnn, importable without
torchvision: facenet-pytorch imports torchvision for its NMS only, and where no torchvision
matches the installed torch, `batched_nms` below stands in (torchvision's algorithm in plain
torch: sort by score, drop boxes whose IoU with a kept one exceeds the threshold).

    pip install pillow tqdm && pip install --no-deps facenet-pytorch==2.6.0   # torch already installed

Used by tests/fixtures/make_mtcnn_reference.py and bench/detect_reference.py.
"""
import os
import sys
import types

import torch


def batched_nms(boxes, scores, idxs, iou_threshold):
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    b = boxes + offsets[:, None]
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    order = scores.sort(descending=True).indices
    suppressed = torch.zeros(len(b), dtype=torch.bool)
    keep = []
    for k, i in enumerate(order.tolist()):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[k + 1:]
        iw = (torch.minimum(b[i, 2], b[rest, 2]) - torch.maximum(b[i, 0], b[rest, 0])).clamp(min=0)
        ih = (torch.minimum(b[i, 3], b[rest, 3]) - torch.maximum(b[i, 1], b[rest, 1])).clamp(min=0)
        inter = iw * ih
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou > iou_threshold]] = True
    return torch.tensor(keep, dtype=torch.int64)


try:
    import torchvision.ops.boxes  # noqa: F401
except Exception:
    tv = types.ModuleType("torchvision")
    tv.ops = types.ModuleType("torchvision.ops")
    tv.ops.boxes = types.ModuleType("torchvision.ops.boxes")
    tv.ops.boxes.batched_nms = batched_nms
    tv.transforms = types.ModuleType("torchvision.transforms")
    tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")
    for name, module in [("torchvision", tv), ("torchvision.ops", tv.ops), ("torchvision.ops.boxes", tv.ops.boxes),
                         ("torchvision.transforms", tv.transforms),
                         ("torchvision.transforms.functional", tv.transforms.functional)]:
        sys.modules[name] = module

from facenet_pytorch.models.mtcnn import ONet, PNet, RNet  # noqa: E402
from facenet_pytorch.models.utils.detect_face import detect_face  # noqa: E402,F401


def load_nets(weights_dir):
    """P-, R- and O-Net with the state dicts in `weights_dir`, in evaluation mode."""
    def net(cls, name):
        model = cls(pretrained=False)
        model.load_state_dict(torch.load(os.path.join(weights_dir, name), map_location="cpu"))
        return model.eval()
    return net(PNet, "pnet.pt"), net(RNet, "rnet.pt"), net(ONet, "onet.pt")
