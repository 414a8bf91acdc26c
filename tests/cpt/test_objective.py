"""CPT's math against hand computations and against PEFT's own CPT (the reference implementation)."""
import math

import pytest
import torch
import torch.nn.functional as F

from zoo.cpt.objective import cpt_loss, decay_weights, is_label, label_scores, project, projection_radius


def test_projection_radius_by_token_type():
    types = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 0])
    r = projection_radius(types, epsilon=0.2, format_epsilon=0.1, width=512)
    s = math.sqrt(512 / 2048)  # 0.5
    expected = torch.tensor([1e-10, 0.1 * s, 0.2 * s, 0.1 * s, 1e-10, 0.1 * s, 0.2 * s, 0.1 * s, 1e-10, 1e-10])
    torch.testing.assert_close(r, expected)


def test_project_onto_the_ball_by_hand():
    delta = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])  # norms 5, 0.5, 0
    out = project(delta, torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]))


def test_projection_equals_peft():
    from peft import CPTConfig
    from peft.tuners.cpt.model import CPTEmbedding

    types = [1, 2, 2, 0, 3, 4, 0, 5, 6, 7, 8]
    config = CPTConfig(task_type="CAUSAL_LM", cpt_token_ids=list(range(11)), cpt_tokens_type_mask=types,
                       opt_projection_epsilon=0.3, opt_projection_format_epsilon=0.05)
    config.token_dim = 16
    emb = CPTEmbedding(config, torch.nn.Embedding(20, 16))
    emb.delta_embedding.weight.data = torch.randn(11, 16, generator=torch.Generator().manual_seed(0))
    ours = project(emb.delta_embedding.weight.data, projection_radius(torch.tensor(types), 0.3, 0.05, 16))
    torch.testing.assert_close(ours, emb.get_projection())


def test_decay_weights_by_hand():
    # three examples (label types 4, 8, 12) and separators: the last example's label weighs 1, then γ, γ²
    types = torch.tensor([[1, 2, 4, 4, 0, 5, 6, 8, 0, 9, 12, 0]])
    w = decay_weights(types, 0.5)
    expected = torch.tensor([[1, 1, 0.25, 0.25, 1, 1, 1, 0.5, 1, 1, 1, 1]])
    torch.testing.assert_close(w, expected)
    assert torch.equal(decay_weights(types, 1.0), torch.ones_like(w))


def test_cpt_loss_by_hand():
    # one row: tokens y0..y4; labels at positions 2 (type 4) and 4 (type 8)
    V = 5
    logits = torch.randn(1, 5, V, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    types = torch.tensor([[1, 2, 4, 5, 8]])
    nll = -F.log_softmax(logits, -1)
    by_hand = (0.9 * nll[0, 1, 2] + 1.0 * nll[0, 3, 4]) / 2  # the earlier example's label weighted γ = 0.9
    torch.testing.assert_close(cpt_loss(logits, ids, types, 0.9), by_hand)


def test_label_scores_is_the_label_words_log_likelihood():
    logits = torch.randn(2, 6, 7, generator=torch.Generator().manual_seed(2))
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 3, 0, 0, 0]])
    target = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 1, 0, 0, 0]])
    logp = F.log_softmax(logits, -1)
    expected = torch.stack([logp[0, 3, 5] + logp[0, 4, 6], logp[1, 1, 3]])
    torch.testing.assert_close(label_scores(logits, ids, target), expected)
    # only the last positions' logits: the same scores where they cover the targets
    torch.testing.assert_close(label_scores(logits[:, 1:], ids, target), expected)


def test_is_label():
    assert is_label(torch.tensor([0, 1, 2, 3, 4, 8, 12, 13])).tolist() == [False, False, False, False, True, True, True, False]


@pytest.mark.parametrize("decay", [1.0, 0.95])
def test_our_context_gives_peft_cpt_loss(decay):
    """Parity: the context written by zoo.cpt.context and our loss on the whole sequence give the same loss as
    PEFT's CPT model called with labels and its input_type_mask, on fixed inputs (tiny-lm)."""
    from peft import CPTConfig, get_peft_model

    from zoo.cpt.context import Templates, build_context, encode_example, pad_right
    from zoo.lm import load_causal_lm

    torch.manual_seed(0)
    model, tok = load_causal_lm("tiny-lm")
    templates = Templates("input: {}", "output: {}", " ", "\n")
    shots = [("a fine film", " positive"), ("dull and long", " negative"), ("a joy", " positive")]
    ids, types = build_context(tok, templates, shots)
    config = CPTConfig(task_type="CAUSAL_LM", cpt_token_ids=ids, cpt_mask=[1] * len(ids), cpt_tokens_type_mask=types,
                       opt_weighted_loss_type="decay" if decay < 1 else "none", opt_loss_decay_factor=decay,
                       opt_projection_epsilon=0.2, opt_projection_format_epsilon=0.1)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # a trained context: δ nonzero (within the ball) on the trainable tokens
        delta = peft_model.prompt_encoder["default"].delta_embedding.weight
        delta.copy_(torch.randn_like(delta) * 0.01)
    queries = [encode_example(tok, templates, t, w, with_inter_separator=False) for t, w in
               [("not good at all", " negative"), ("great", " positive")]]
    q_ids, q_types = pad_right([q for q, _ in queries], tok.pad_token_id), pad_right([t for _, t in queries], 0)
    mask = pad_right([[1] * len(q) for q, _ in queries], 0)

    reference = peft_model(input_ids=q_ids, attention_mask=mask, labels=q_ids, input_type_mask=q_types.clone()).loss

    logits = peft_model(input_ids=q_ids, attention_mask=mask).logits
    B = q_ids.shape[0]
    full_ids = torch.cat([torch.tensor(ids).expand(B, -1), q_ids], 1)
    shifted = torch.where(q_types > 0, q_types + max(types), q_types)
    full_types = torch.cat([torch.tensor(types).expand(B, -1), shifted], 1)
    torch.testing.assert_close(cpt_loss(logits, full_ids, full_types, decay), reference, rtol=1e-6, atol=1e-6)
