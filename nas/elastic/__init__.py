"""Elastic layers: shared weights sliced to an active shape passed as arguments, plus export."""

from nas.elastic.conv import ElasticConv2d
from nas.elastic.depth import ElasticStage
from nas.elastic.linear import ElasticLinear
from nas.elastic.norm import ElasticBatchNorm2d
from nas.elastic.quant import ElasticActQuant, fake_quant_weight

__all__ = [
    "ElasticActQuant",
    "ElasticBatchNorm2d",
    "ElasticConv2d",
    "ElasticLinear",
    "ElasticStage",
    "fake_quant_weight",
]
