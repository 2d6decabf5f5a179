import numpy as np
import pytest

from analysis_lib.data import toyworld as tw


def object_centre(image: np.ndarray, colour: str) -> tuple[float, float]:
    """Centroid (row, col) of the pixels nearest to a palette colour, after removing the brightness shift."""
    pixels = image.astype(float) - (np.median(image) - 128)
    palette = np.array(list(tw.COLOURS.values()), dtype=float)
    distance = np.linalg.norm(pixels[:, :, None, :] - palette, axis=-1)
    nearest = distance.argmin(-1)
    index = list(tw.COLOURS).index(colour)
    rows, cols = np.nonzero((nearest == index) & (distance.min(-1) < 50))
    assert len(rows) > 3, f"no {colour} object found"
    return rows.mean(), cols.mean()


def test_same_seed_same_scenes_and_pixels(world):
    a = tw.sample_scenes(50, world, seed=3)
    b = tw.sample_scenes(50, world, seed=3)
    assert a == b
    assert np.array_equal(tw.render_all(a, world, 7), tw.render_all(b, world, 7))
    assert a != tw.sample_scenes(50, world, seed=4)
    assert not np.array_equal(tw.render_all(a, world, 7), tw.render_all(a, world, 8))


def test_relations_are_balanced_and_objects_distinct(world):
    scenes = tw.sample_scenes(400, world, seed=0)
    counts = {r: sum(s.relation == r for s in scenes) for r in tw.RELATIONS}
    assert set(counts.values()) == {100}
    assert all(s.first.colour != s.second.colour and s.first.shape != s.second.shape for s in scenes)


@pytest.mark.parametrize("seed", range(3))
def test_caption_relation_matches_rendered_coordinates(world, seed):
    scenes = tw.sample_scenes(60, world, seed=seed)
    images = tw.render_all(scenes, world, seed + 100)
    for scene, image in zip(scenes, images):
        (r1, c1), (r2, c2) = object_centre(image, scene.first.colour), object_centre(image, scene.second.colour)
        caption = tw.relational_caption(scene)
        expected = {"left_of": c1 < c2 - 4, "right_of": c1 > c2 + 4, "above": r1 < r2 - 4, "below": r1 > r2 + 4}
        assert expected[scene.relation], (caption, (r1, c1), (r2, c2))
        assert tw.RELATION_PHRASES[scene.relation] in caption


def test_objects_stay_inside_their_patch(world):
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = tw.random_scene(rng, world)
        image = tw.render(scene, world, rng)
        row, col = object_centre(image, scene.first.colour)
        assert (int(row // world.cell), int(col // world.cell)) == scene.first_cell


def test_object_offsets_are_where_render_all_drew_the_objects(world):
    scenes = tw.sample_scenes(40, world, seed=1)
    images, offsets = tw.render_all(scenes, world, seed=2), tw.object_offsets(scenes, world, seed=2)
    assert offsets.shape == (40, 2, 2) and set(np.unique(offsets)) == set(range(world.cell - world.object_size + 1))
    for scene, image, (first, _) in zip(scenes, images, offsets):
        if scene.first.shape != "square":  # a square's centroid sits where its window does
            continue
        row, col = object_centre(image, scene.first.colour)
        top, left = (cell * world.cell + shift for cell, shift in zip(scene.first_cell, first))
        assert (
            abs(row - (top + world.object_size / 2 - 0.5)) < 0.5
            and abs(col - (left + world.object_size / 2 - 0.5)) < 0.5
        )


def foil_kind(scene: tw.Scene, caption: str) -> str:
    """Which kind of foil a false relational caption is, read back from its words."""
    words = caption.split()
    said = {tw.Obj(words[1], words[2]), tw.Obj(words[-2], words[-1])}
    true = {scene.first, scene.second}
    if said == true:
        return "relation"
    (new,), (old,) = said - true, true - said
    in_scene = {scene.first.colour, scene.second.colour}, {scene.first.shape, scene.second.shape}
    assert new.colour == old.colour or new.colour not in in_scene[0], caption
    assert new.shape == old.shape or new.shape not in in_scene[1], caption
    if new.shape == old.shape:
        return "colour"
    return "shape" if new.colour == old.colour else "absent object"


def test_false_captions_are_false_and_their_kinds_drawn_as_configured(world):
    rng = np.random.default_rng(0)
    scenes = tw.sample_scenes(2000, world, seed=1)
    false = [tw.false_caption(s, rng) for s in scenes]
    assert all(f != tw.relational_caption(s) for f, s in zip(false, scenes))
    kinds = [foil_kind(s, f) for s, f in zip(scenes, false)]
    shares = {kind: kinds.count(kind) / len(kinds) for kind in tw.FOIL_SHARES}
    assert all(abs(shares[k] - tw.FOIL_SHARES[k]) < 0.04 for k in shares), shares
    uniform = [foil_kind(s, tw.false_caption(s, rng, dict.fromkeys(tw.FOIL_SHARES, 1.0))) for s in scenes]
    assert abs(uniform.count("relation") / len(uniform) - 0.25) < 0.04


def test_list_task_names_every_object_with_its_cell(world):
    rng = np.random.default_rng(0)
    for scene in tw.sample_scenes(50, world, seed=3):
        question, answer, truthful = tw.instruction_example(scene, rng, {"list": 1.0})
        assert question == tw.LIST_QUESTION and truthful
        for obj, cell in tw.placed_objects(scene):
            assert f"a {obj.phrase} {tw.cell_words(cell)}" in answer.split(" and ")


def test_unknown_task_is_refused(world):
    scene = tw.sample_scenes(1, world, seed=0)[0]
    with pytest.raises(ValueError, match="unknown task 'wher'"):
        tw.instruction_example(scene, np.random.default_rng(0), {"wher": 1.0})


def test_caption_mix_follows_the_relational_fraction():
    rng = np.random.default_rng(0)
    scene = tw.sample_scenes(1, tw.WorldConfig(), seed=0)[0]
    for fraction in (0.0, 0.5, 1.0):
        cfg = tw.WorldConfig(relational_caption_fraction=fraction)
        captions = [tw.training_caption(scene, rng, cfg) for _ in range(400)]
        share = np.mean([" and " not in c for c in captions])
        assert abs(share - fraction) < 0.08


def test_every_word_is_in_the_vocabulary(world):
    rng = np.random.default_rng(0)
    vocab = set(tw.vocabulary())
    for scene in tw.sample_scenes(100, world, seed=2):
        tasks = dict.fromkeys(tw.TASKS, 1.0)
        for text in [*tw.instruction_example(scene, rng, tasks)[:2], tw.training_caption(scene, rng, world)]:
            words = text.lower().replace('"', ' " ').replace("?", " ? ").replace(".", " . ").split()
            assert set(words) <= vocab, text


def test_names_any_matches_whole_object_phrases_in_question_or_answer():
    assert tw.names_any(tw.Turn('Does this figure show "a red circle left of a blue cross"?', "No"), ("blue cross",))
    assert tw.names_any(tw.Turn("Describe the image.", "a red circle above a green square"), ("green square",))
    assert not tw.names_any(tw.Turn("Where is the red square?", "top left"), ("red circle", "green square"))
    assert not tw.names_any(tw.Turn("Where is the blue crosses?", "top"), ("blue cross",))


def test_shows_any_looks_at_both_objects():
    scene = tw.Scene(tw.Obj("red", "circle"), tw.Obj("blue", "cross"), (0, 0), (0, 1), "left_of")
    assert tw.shows_any(scene, ("blue cross",)) and not tw.shows_any(scene, ("red cross", "blue circle"))
