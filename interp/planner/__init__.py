"""TFLM's arena memory plan, reproduced exactly, explained, and improved.

``plan_arena(model_or_interpreter)`` answers "how much arena RAM does TFLite Micro need for this
model?" with the number TFLM itself prints as "Arena allocation head": the size of the
non-persistent overlay in which every activation tensor and every scratch buffer lives. It
reproduces, step by step, what TFLM does in ``MicroAllocator::CommitStaticMemoryPlan``:

1. **Scratch requests** (``scratch``): what each kernel asks for in Prepare, from microref's
   prepared kernels or TFLM's rules; an operator that cannot be sized is reported, not refused.
2. **Lifetimes** (``lifetimes``, TFLM's ``AllocationInfoBuilder``): a scope counter starts at 0
   with the graph inputs; operator i of subgraph 0 runs at scope i + 1 (control-flow operators
   first enter the subgraphs they call, one extra scope each); an input is live through the
   scope of its last reader, an output from its producer's; graph outputs stay live to the
   final scope; a scratch buffer lives during its operator only. Lifetimes are *inclusive*: a
   buffer that dies at scope s and one born at scope s overlap, so there is no in-place reuse.
   Planned: tensors with no data in the flatbuffer, not variable (variables live in the
   persistent tail), of nonzero size, then every scratch request; each size rounded up to 16.
3. **Offline offsets** from ``OfflineMemoryAllocation`` metadata, used as given once
   ``check_offline_plan`` (``checks``) trusts them.
4. **GreedyMemoryPlanner** (``greedy``): offline buffers first, then online ones in *reverse*
   insertion order, stably sorted by size, largest first; each placed at the lowest offset where
   it fits between the already-placed buffers whose lifetimes overlap its own.

Built on that plan (``plan.ArenaPlan``): a per-operator timeline and the lower bound on any plan
(the most bytes live at one time), TFLM's persistent tail and the smallest arena it accepts,
replayed allocation by allocation (``tail``, ``persistent``, ``abi``), a better
offset assignment than TFLM's greedy one (``improve``, ``plan.improved``) that can be written
back into the model so that TFLM uses it (``offline``), a search over operator orders
(``orders``), a checker that lays every buffer into one byte array (``check_plan``), text and
JSON reports (``report``), and execution inside the arena (``arena_exec``).
"""
from .abi import MCU32, WHEEL, Build
from .checks import PlanError, check_offline_plan, check_plan
from .greedy import arena_extent, greedy_offsets, live_profile, place_buffers
from .improve import exact_search, improve_plan
from .lifetimes import (
    ARENA_ALIGNMENT,
    CONTROL_FLOW_SUBGRAPHS,
    OFFLINE_METADATA,
    ONLINE,
    Lifetimes,
    PlannedBuffer,
    align_up,
    check_order,
    collect_buffers,
    mark_lifetimes,
    operator_dependencies,
    read_offline_offsets,
    subgraph_offsets,
)
from .offline import offline_plan_words, write_improved_model, write_model_metadata, write_offline_plan
from .orders import OrderSearchResult, search_operator_orders
from .persistent import OpAllocations, model_allocations
from .plan import (
    DEFAULT_BUDGET,
    DEFAULT_FLASH_BUDGET,
    ArenaPlan,
    ImprovedPlan,
    TimelineStep,
    build_plan,
    plan_arena,
    tensor_slice,
    tensor_view,
)
from .report import format_plan, plan_to_json
from .scratch import (
    POINTER_BYTES,
    ScratchRequest,
    UnknownScratch,
    model_scratch_requests,
    normalise_scratch,
    operator_scratch,
    reference_scratch_requests,
)
from .tail import ArenaRequirement, arena_requirement

__all__ = [
    "ARENA_ALIGNMENT", "CONTROL_FLOW_SUBGRAPHS", "DEFAULT_BUDGET", "DEFAULT_FLASH_BUDGET", "MCU32",
    "OFFLINE_METADATA", "ONLINE", "POINTER_BYTES", "WHEEL", "ArenaPlan", "ArenaRequirement",
    "Build", "ImprovedPlan", "Lifetimes", "OpAllocations", "OrderSearchResult", "PlanError",
    "PlannedBuffer", "ScratchRequest", "TimelineStep", "UnknownScratch", "align_up", "arena_extent",
    "arena_requirement", "build_plan", "check_offline_plan", "check_order", "check_plan",
    "collect_buffers", "exact_search", "format_plan", "greedy_offsets", "improve_plan",
    "live_profile", "mark_lifetimes", "model_allocations", "model_scratch_requests",
    "normalise_scratch", "offline_plan_words", "operator_dependencies", "operator_scratch",
    "place_buffers", "plan_arena", "plan_to_json", "read_offline_offsets",
    "reference_scratch_requests", "search_operator_orders", "subgraph_offsets", "tensor_slice",
    "tensor_view", "write_improved_model", "write_model_metadata", "write_offline_plan",
]
