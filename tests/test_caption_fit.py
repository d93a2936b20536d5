"""Captions that fit: preprocess counts tokens with the base's own tokenizer (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landmark_lora import rawtable
from landmark_lora.caption_fit import CaptionFit, CaptionTooLongError, load_base_tokenizer
from landmark_lora.catalogue import ANGLES, SHOTS, Landmark, load_catalogue
from landmark_lora.config import CaptionConfig, ModelConfig, parse_params
from landmark_lora.fsutil import sha256_file
from landmark_lora.synthetic.person import POSES
from landmark_lora.toyworld.tokenizer import train_bpe, write_clip_tokenizer

CAT = load_catalogue()
WORDS = CaptionConfig()
SMALL_CORPUS = ["lmksnap snapshot photo, in front of a palace, upper-body shot, eye-level angle, person waving",
                "close-up shot, low-angle shot from below, high-angle shot from above, wide shot"]


def _small_tokenizer(folder: Path, max_length: int):
    """A BPE tokenizer trained here on two sentences: known words whole, the rest as byte pieces."""
    return write_clip_tokenizer(folder, train_bpe(SMALL_CORPUS), max_length=max_length)


def _landmark(name: str, description: str = "a long description of the place " * 3) -> Landmark:
    return Landmark(slug="test_place", name_en=name, name_ko="", description=description)


def test_small_bpe_counts_whole_words_as_one_token(tmp_path):
    tok = _small_tokenizer(tmp_path / "tok", 77)
    fit = CaptionFit(tok)
    assert fit.count("snapshot photo, upper-body shot") == 7  # snapshot photo , upper - body shot
    assert fit.count("zzzz") > 1  # unknown word: byte pieces, never <unk>
    assert tok.unk_token_id not in tok("zzzz").input_ids[1:-1]  # CLIP: unk is EOS


def test_labelled_field_past_the_limit_fails_naming_photo_and_field(tmp_path):
    fit = CaptionFit(_small_tokenizer(tmp_path / "tok", 27))  # 25 tokens of text
    # 3 + 1 + in front of q x q palace (7) + 1 + upper - body shot (4) + 1 + low - angle shot from below (6)
    # = 23 tokens: shot and angle fit; ", person waving" ends at 26, past 25
    lm = _landmark("Qxq Palace")
    with pytest.raises(CaptionTooLongError) as err:
        fit.check("data/raw/test_place/p1.jpg", WORDS, lm, "upper_body", "low_angle", "waving")
    msg = str(err.value)
    assert "data/raw/test_place/p1.jpg" in msg and "pose field" in msg and "27-token" in msg
    assert "caption.template" in msg  # says how to fix it

    # a landmark name long enough to lose the landmark itself names that field
    with pytest.raises(CaptionTooLongError, match=r"p2\.jpg: the caption's landmark field"):
        fit.check("p2.jpg", WORDS, _landmark("Qzx " * 20), "upper_body", "low_angle", "waving")


def test_cut_description_is_counted_not_fatal(tmp_path):
    fit = CaptionFit(_small_tokenizer(tmp_path / "tok", 40))
    n = fit.check("p1.jpg", WORDS, _landmark("Palace"), "wide", "eye_level", "waving")  # labels fit, description not
    assert n > 38
    assert fit.check("p2.jpg", WORDS, _landmark("Palace", description=""), "wide", "eye_level", "waving") <= 38
    report = fit.report()
    assert report["descriptions_cut"] == 1 and report["checked"] == 2 and report["cut_examples"] == ["p1.jpg"]
    assert report["max_tokens"] == 40 and report["longest_tokens"] == n


def test_no_sample_set_caption_loses_anything_with_the_toyworld_tokenizer():
    """Every landmark x shot x angle x pose caption fits whole in the toy-world base's 77 tokens."""
    fit = CaptionFit(load_base_tokenizer(ModelConfig(base="toyworld")))
    assert fit.max_tokens == 75
    for lm in CAT.values():
        for shot in SHOTS:
            for angle in ANGLES:
                for pose in POSES:
                    fit.check(f"{lm.slug}/{shot}-{angle}-{pose}", WORDS, lm, shot, angle, pose)
    assert fit.checked == len(CAT) * len(SHOTS) * len(ANGLES) * len(POSES)
    assert fit.descriptions_cut == 0, fit.cut_examples  # not even the description is cut
    assert fit.longest <= 60


def test_the_fast_tokenizer_counts_what_transformers_counts():
    """load_base_tokenizer reads the toy-world base's tokenizer.json with `tokenizers` (no transformers
    import): every sample-set caption and some awkward text get the CLIPTokenizer's counts and limit."""
    from transformers import CLIPTokenizer

    from landmark_lora.caption_fit import FastTokenizer
    from landmark_lora.catalogue import render_caption
    from landmark_lora.diffusion.base import ensure_base_model

    fast = load_base_tokenizer(ModelConfig(base="toyworld"))
    assert isinstance(fast, FastTokenizer)
    slow = CLIPTokenizer.from_pretrained(str(ensure_base_model("toyworld")), subfolder="tokenizer")
    assert fast.model_max_length == slow.model_max_length == 77
    texts = [render_caption(WORDS, lm, shot, angle, pose) for lm in CAT.values() for shot in SHOTS
             for angle in ANGLES for pose in POSES[:3]]
    texts += ["Café  crème — naïve façade", "경복궁 앞에서", "😀 emoji!!", "tabs\tand\nnewlines", "MiXeD 12345 3.14",
              "it's don't", "a" * 300, "  spaced  ", "Ⅻ ﬁ ＡＢＣ", ""]
    for text in texts:
        assert (len(fast(text, add_special_tokens=False).input_ids)
                == len(slow(text, add_special_tokens=False, verbose=False).input_ids)), text


# ---------------------------------------------------------------- through the preprocess stage


def _fake_base(root: Path, max_length: int) -> Path:
    """A diffusers folder with just a tokenizer and a text-encoder config: all preprocess reads."""
    _small_tokenizer(root / "tokenizer", max_length).save_pretrained(str(root / "tokenizer"))
    (root / "text_encoder").mkdir()
    (root / "text_encoder" / "config.json").write_text(json.dumps({"max_position_embeddings": max_length}))
    (root / "model_index.json").write_text(json.dumps({"tokenizer": ["transformers", "CLIPTokenizer"],
                                                       "text_encoder": ["transformers", "CLIPTextModel"]}))
    return root


def _raw_table(raw: Path, poses: list[str]) -> None:
    rows = []
    rng = np.random.default_rng(0)
    for seq, pose in enumerate(poses, 1):
        path = raw / "gyeongbokgung" / f"p{seq}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (96, 72, 3), dtype=np.uint8)).save(path, quality=80)
        rows.append({"file": f"gyeongbokgung/{path.name}", "landmark": "gyeongbokgung", "shot": "wide",
                     "angle": "eye_level", "pose": pose, "caption": "", "sha256": sha256_file(path),
                     "bytes": path.stat().st_size, "width": 72, "height": 96, "format": "JPEG", "mode": "RGB",
                     "exif_orientation": 1, "source": path.name, "seq": seq,
                     "ingested_at": "2026-11-25T00:00:00+00:00"})
    rawtable.write_rows(raw, rows)


def _params(tmp_path: Path, base: Path):
    return parse_params({
        "paths": {k: str(tmp_path / k) for k in ("incoming", "raw", "quarantine", "processed", "reports", "cache")},
        "data": {"person_detector": "center"},
        "model": {"base": str(base)},
    })


def test_preprocess_fails_before_writing_when_a_pose_would_be_cut(tmp_path):
    from landmark_lora.stages.preprocess import preprocess

    params = _params(tmp_path, _fake_base(tmp_path / "base", 31))  # labels up to the angle: 27 tokens; + pose: 30
    _raw_table(params.paths.raw, ["waving", "pointing at the landmark"])
    with pytest.raises(CaptionTooLongError) as err:
        preprocess(params, CAT)
    assert "gyeongbokgung/p1.jpg" in str(err.value) and "pose field" in str(err.value)
    assert not (params.paths.processed / "train").exists()  # nothing half-written


def test_preprocess_reports_how_many_descriptions_are_cut(tmp_path):
    from landmark_lora.stages.preprocess import preprocess

    params = _params(tmp_path, _fake_base(tmp_path / "base", 40))
    _raw_table(params.paths.raw, ["waving", "waving", "waving"])
    preprocess(params, CAT)
    report = json.loads((params.paths.reports / "preprocess.json").read_text())["captions"]
    assert report["checked"] == 3 and report["descriptions_cut"] == 3 and report["max_tokens"] == 40
    assert report["base"] == str(tmp_path / "base")
