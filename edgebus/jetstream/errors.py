"""Every JetStream API error, in one table, and the exception that carries one.

The table holds nats-server 2.11's error catalogue (`server/errors.json`): for each error its
numeric `err_code`, the HTTP-like `code` clients branch on, nats-server's constant name (so a
reader can find it upstream) and the description template. Templates use `{name}`
placeholders that `js_err(err_code, name=value)` fills in.

On the wire an error is exactly `{"code", "err_code", "description"}` — nats-py builds its
exception with `APIError(**err)`, so no other key may appear (see `JSError.to_json`).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple


class ErrorDef(NamedTuple):
    err_code: int
    code: int
    name: str
    description: str


# (err_code, code, nats-server constant, description template), sorted by err_code.
_ROWS: tuple[tuple[int, int, str, str], ...] = (
    (10002, 400, 'JSAccountResourcesExceededErr', 'resource limits exceeded for account'),
    (10003, 400, 'JSBadRequestErr', 'bad request'),
    (10004, 503, 'JSClusterIncompleteErr', 'incomplete results'),
    (10005, 400, 'JSClusterNoPeersErrF', '{err}'),
    (10006, 500, 'JSClusterNotActiveErr', 'JetStream not in clustered mode'),
    (10007, 500, 'JSClusterNotAssignedErr', 'JetStream cluster not assigned to this server'),
    (10008, 503, 'JSClusterNotAvailErr', 'JetStream system temporarily unavailable'),
    (10009, 500, 'JSClusterNotLeaderErr', 'JetStream cluster can not handle request'),
    (10010, 503, 'JSClusterRequiredErr', 'JetStream clustering support required'),
    (10011, 400, 'JSClusterTagsErr', 'tags placement not supported for operation'),
    (10012, 500, 'JSConsumerCreateErrF', '{err}'),
    (10013, 400, 'JSConsumerNameExistErr', 'consumer name already in use'),
    (10014, 404, 'JSConsumerNotFoundErr', 'consumer not found'),
    (10015, 400, 'JSSnapshotDeliverSubjectInvalidErr', 'deliver subject not valid'),
    (10016, 400, 'JSConsumerDurableNameNotInSubjectErr', 'consumer expected to be durable but no durable name set in subject'),
    (10017, 400, 'JSConsumerDurableNameNotMatchSubjectErr', 'consumer name in subject does not match durable name in request'),
    (10018, 400, 'JSConsumerDurableNameNotSetErr', 'consumer expected to be durable but a durable name was not set'),
    (10019, 400, 'JSConsumerEphemeralWithDurableInSubjectErr', 'consumer expected to be ephemeral but detected a durable name set in subject'),
    (10020, 400, 'JSConsumerEphemeralWithDurableNameErr', 'consumer expected to be ephemeral but a durable name was set in request'),
    (10021, 400, 'JSStreamExternalApiOverlapErrF', 'stream external api prefix {prefix} must not overlap with {subject}'),
    (10022, 400, 'JSStreamExternalDelPrefixOverlapsErrF', 'stream external delivery prefix {prefix} overlaps with stream subject {subject}'),
    (10023, 503, 'JSInsufficientResourcesErr', 'insufficient resources'),
    (10024, 400, 'JSStreamInvalidExternalDeliverySubjErrF', 'stream external delivery prefix {prefix} must not contain wildcards'),
    (10025, 400, 'JSInvalidJSONErr', 'invalid JSON: {err}'),
    (10026, 400, 'JSMaximumConsumersLimitErr', 'maximum consumers limit reached'),
    (10027, 400, 'JSMaximumStreamsLimitErr', 'maximum number of streams reached'),
    (10028, 500, 'JSMemoryResourcesExceededErr', 'insufficient memory resources available'),
    (10029, 500, 'JSMirrorConsumerSetupFailedErrF', '{err}'),
    (10030, 400, 'JSMirrorMaxMessageSizeTooBigErr', 'stream mirror must have max message size >= source'),
    (10031, 400, 'JSMirrorWithSourcesErr', 'stream mirrors can not also contain other sources'),
    (10032, 400, 'JSMirrorWithStartSeqAndTimeErr', 'stream mirrors can not have both start seq and start time configured'),
    (10033, 400, 'JSMirrorWithSubjectFiltersErr', 'stream mirrors can not contain filtered subjects'),
    (10034, 400, 'JSMirrorWithSubjectsErr', 'stream mirrors can not contain subjects'),
    (10035, 503, 'JSNoAccountErr', 'account not found'),
    (10036, 503, 'JSClusterUnSupportFeatureErr', 'not currently supported in clustered mode'),
    (10037, 404, 'JSNoMessageFoundErr', 'no message found'),
    (10038, 400, 'JSNotEmptyRequestErr', 'expected an empty request payload'),
    (10039, 503, 'JSNotEnabledForAccountErr', 'JetStream not enabled for account'),
    (10040, 400, 'JSClusterPeerNotMemberErr', 'peer not a member'),
    (10041, 500, 'JSRaftGeneralErrF', '{err}'),
    (10042, 500, 'JSRestoreSubscribeFailedErrF', 'JetStream unable to subscribe to restore snapshot {subject}: {err}'),
    (10043, 400, 'JSSequenceNotFoundErrF', 'sequence {seq} not found'),
    (10044, 400, 'JSClusterServerNotMemberErr', 'server is not a member of the cluster'),
    (10045, 500, 'JSSourceConsumerSetupFailedErrF', '{err}'),
    (10046, 400, 'JSSourceMaxMessageSizeTooBigErr', 'stream source must have max message size >= target'),
    (10047, 500, 'JSStorageResourcesExceededErr', 'insufficient storage resources available'),
    (10048, 500, 'JSStreamAssignmentErrF', '{err}'),
    (10049, 500, 'JSStreamCreateErrF', '{err}'),
    (10050, 500, 'JSStreamDeleteErrF', '{err}'),
    (10051, 500, 'JSStreamGeneralErrorF', '{err}'),
    (10052, 500, 'JSStreamInvalidConfigF', '{err}'),
    (10053, 500, 'JSStreamLimitsErrF', '{err}'),
    (10054, 400, 'JSStreamMessageExceedsMaximumErr', 'message size exceeds maximum allowed'),
    (10055, 400, 'JSStreamMirrorNotUpdatableErr', 'stream mirror configuration can not be updated'),
    (10056, 400, 'JSStreamMismatchErr', 'stream name in subject does not match request'),
    (10057, 500, 'JSStreamMsgDeleteFailedF', '{err}'),
    (10058, 400, 'JSStreamNameExistErr', 'stream name already in use with a different configuration'),
    (10059, 404, 'JSStreamNotFoundErr', 'stream not found'),
    (10060, 400, 'JSStreamNotMatchErr', 'expected stream does not match'),
    (10061, 400, 'JSStreamReplicasNotUpdatableErr', 'Replicas configuration can not be updated'),
    (10062, 500, 'JSStreamRestoreErrF', 'restore failed: {err}'),
    (10063, 503, 'JSStreamSequenceNotMatchErr', 'expected stream sequence does not match'),
    (10064, 500, 'JSStreamSnapshotErrF', 'snapshot failed: {err}'),
    (10065, 400, 'JSStreamSubjectOverlapErr', 'subjects overlap with an existing stream'),
    (10066, 500, 'JSStreamTemplateCreateErrF', '{err}'),
    (10067, 500, 'JSStreamTemplateDeleteErrF', '{err}'),
    (10068, 404, 'JSStreamTemplateNotFoundErr', 'template not found'),
    (10069, 500, 'JSStreamUpdateErrF', '{err}'),
    (10070, 400, 'JSStreamWrongLastMsgIDErrF', 'wrong last msg ID: {id}'),
    (10071, 400, 'JSStreamWrongLastSequenceErrF', 'wrong last sequence: {seq}'),
    (10072, 500, 'JSTempStorageFailedErr', 'JetStream unable to open temp storage for restore'),
    (10073, 400, 'JSTemplateNameNotMatchSubjectErr', 'template name in subject does not match request'),
    (10074, 500, 'JSStreamReplicasNotSupportedErr', 'replicas > 1 not supported in non-clustered mode'),
    (10075, 503, 'JSPeerRemapErr', 'peer remap failed'),
    (10076, 503, 'JSNotEnabledErr', 'JetStream not enabled'),
    (10077, 503, 'JSStreamStoreFailedF', '{err}'),
    (10078, 400, 'JSConsumerConfigRequiredErr', 'consumer config required'),
    (10079, 400, 'JSConsumerDeliverToWildcardsErr', 'consumer deliver subject has wildcards'),
    (10080, 400, 'JSConsumerPushMaxWaitingErr', 'consumer in push mode can not set max waiting'),
    (10081, 400, 'JSConsumerDeliverCycleErr', 'consumer deliver subject forms a cycle'),
    (10082, 400, 'JSConsumerMaxPendingAckPolicyRequiredErr', 'consumer requires ack policy for max ack pending'),
    (10083, 400, 'JSConsumerSmallHeartbeatErr', 'consumer idle heartbeat needs to be >= 100ms'),
    (10084, 400, 'JSConsumerPullRequiresAckErr', 'consumer in pull mode requires explicit ack policy on workqueue stream'),
    (10085, 400, 'JSConsumerPullNotDurableErr', 'consumer in pull mode requires a durable name'),
    (10086, 400, 'JSConsumerPullWithRateLimitErr', 'consumer in pull mode can not have rate limit set'),
    (10087, 400, 'JSConsumerMaxWaitingNegativeErr', 'consumer max waiting needs to be positive'),
    (10088, 400, 'JSConsumerHBRequiresPushErr', 'consumer idle heartbeat requires a push based consumer'),
    (10089, 400, 'JSConsumerFCRequiresPushErr', 'consumer flow control requires a push based consumer'),
    (10090, 400, 'JSConsumerDirectRequiresPushErr', 'consumer direct requires a push based consumer'),
    (10091, 400, 'JSConsumerDirectRequiresEphemeralErr', 'consumer direct requires an ephemeral consumer'),
    (10092, 400, 'JSConsumerOnMappedErr', 'consumer direct on a mapped consumer'),
    (10093, 400, 'JSConsumerFilterNotSubsetErr', 'consumer filter subject is not a valid subset of the interest subjects'),
    (10094, 400, 'JSConsumerInvalidPolicyErrF', '{err}'),
    (10095, 400, 'JSConsumerInvalidSamplingErrF', 'failed to parse consumer sampling configuration: {err}'),
    (10096, 500, 'JSStreamInvalidErr', 'stream not valid'),
    (10097, 400, 'JSStreamHeaderExceedsMaximumErr', 'header size exceeds maximum allowed of 64k'),
    (10098, 400, 'JSConsumerWQRequiresExplicitAckErr', 'workqueue stream requires explicit ack'),
    (10099, 400, 'JSConsumerWQMultipleUnfilteredErr', 'multiple non-filtered consumers not allowed on workqueue stream'),
    (10100, 400, 'JSConsumerWQConsumerNotUniqueErr', 'filtered consumer not unique on workqueue stream'),
    (10101, 400, 'JSConsumerWQConsumerNotDeliverAllErr', 'consumer must be deliver all on workqueue stream'),
    (10102, 400, 'JSConsumerNameTooLongErrF', 'consumer name is too long, maximum allowed is {max}'),
    (10103, 400, 'JSConsumerBadDurableNameErr', "durable name can not contain '.', '*', '>'"),
    (10104, 500, 'JSConsumerStoreFailedErrF', 'error creating store for consumer: {err}'),
    (10105, 400, 'JSConsumerExistingActiveErr', 'consumer already exists and is still active'),
    (10106, 400, 'JSConsumerReplacementWithDifferentNameErr', 'consumer replacement durable config not the same'),
    (10107, 400, 'JSConsumerDescriptionTooLongErrF', 'consumer description is too long, maximum allowed is {max}'),
    (10108, 400, 'JSConsumerWithFlowControlNeedsHeartbeats', 'consumer with flow control also needs heartbeats'),
    (10109, 400, 'JSStreamSealedErr', 'invalid operation on sealed stream'),
    (10110, 500, 'JSStreamPurgeFailedF', '{err}'),
    (10111, 500, 'JSStreamRollupFailedF', '{err}'),
    (10112, 400, 'JSConsumerInvalidDeliverSubject', 'invalid push consumer deliver subject'),
    (10113, 400, 'JSStreamMaxBytesRequired', 'account requires a stream config to have max bytes set'),
    (10114, 400, 'JSConsumerMaxRequestBatchNegativeErr', 'consumer max request batch needs to be > 0'),
    (10115, 400, 'JSConsumerMaxRequestExpiresToSmall', 'consumer max request expires needs to be >= 1ms'),
    (10116, 400, 'JSConsumerMaxDeliverBackoffErr', 'max deliver is required to be > length of backoff values'),
    (10117, 500, 'JSStreamInfoMaxSubjectsErr', 'subject details would exceed maximum allowed'),
    (10118, 500, 'JSStreamOfflineErr', 'stream is offline'),
    (10119, 500, 'JSConsumerOfflineErr', 'consumer is offline'),
    (10120, 400, 'JSNoLimitsErr', 'no JetStream default or applicable tiered limit present'),
    (10121, 400, 'JSConsumerMaxPendingAckExcessErrF', 'consumer max ack pending exceeds system limit of {limit}'),
    (10122, 400, 'JSStreamMaxStreamBytesExceeded', 'stream max bytes exceeds account limit max stream bytes'),
    (10123, 400, 'JSStreamMoveAndScaleErr', 'can not move and scale a stream in a single update'),
    (10124, 400, 'JSStreamMoveInProgressF', 'stream move already in progress: {msg}'),
    (10125, 400, 'JSConsumerMaxRequestBatchExceededF', 'consumer max request batch exceeds server limit of {limit}'),
    (10126, 400, 'JSConsumerReplicasExceedsStream', 'consumer config replica count exceeds parent stream'),
    (10127, 400, 'JSConsumerNameContainsPathSeparatorsErr', 'Consumer name can not contain path separators'),
    (10128, 400, 'JSStreamNameContainsPathSeparatorsErr', 'Stream name can not contain path separators'),
    (10129, 400, 'JSStreamMoveNotInProgress', 'stream move not in progress'),
    (10130, 400, 'JSStreamNameExistRestoreFailedErr', 'stream name already in use, cannot restore'),
    (10131, 400, 'JSConsumerCreateFilterSubjectMismatchErr', 'Consumer create request did not match filtered subject from create subject'),
    (10132, 400, 'JSConsumerCreateDurableAndNameMismatch', 'Consumer Durable and Name have to be equal if both are provided'),
    (10133, 400, 'JSReplicasCountCannotBeNegative', 'replicas count cannot be negative'),
    (10134, 400, 'JSConsumerReplicasShouldMatchStream', "consumer config replicas must match interest retention stream's replicas"),
    (10135, 400, 'JSConsumerMetadataLengthErrF', 'consumer metadata exceeds maximum size of {limit}'),
    (10136, 400, 'JSConsumerDuplicateFilterSubjects', 'consumer cannot have both FilterSubject and FilterSubjects specified'),
    (10137, 400, 'JSConsumerMultipleFiltersNotAllowed', 'consumer with multiple subject filters cannot use subject based API'),
    (10138, 400, 'JSConsumerOverlappingSubjectFilters', 'consumer subject filters cannot overlap'),
    (10139, 400, 'JSConsumerEmptyFilter', 'consumer filter in FilterSubjects cannot be empty'),
    (10140, 400, 'JSSourceDuplicateDetected', 'duplicate source configuration detected'),
    (10141, 400, 'JSSourceInvalidStreamName', 'sourced stream name is invalid'),
    (10142, 400, 'JSMirrorInvalidStreamName', 'mirrored stream name is invalid'),
    (10143, 400, 'JSMirrorWithFirstSeqErr', 'stream mirrors can not have first sequence configured'),
    (10144, 400, 'JSSourceMultipleFiltersNotAllowed', 'source with multiple subject transforms cannot also have a single subject filter'),
    (10145, 400, 'JSSourceInvalidSubjectFilter', 'source transform source: {err}'),
    (10146, 400, 'JSSourceInvalidTransformDestination', 'source transform: {err}'),
    (10147, 400, 'JSSourceOverlappingSubjectFilters', 'source filters can not overlap'),
    (10148, 400, 'JSConsumerAlreadyExists', 'consumer already exists'),
    (10149, 400, 'JSConsumerDoesNotExist', 'consumer does not exist'),
    (10150, 400, 'JSMirrorMultipleFiltersNotAllowed', 'mirror with multiple subject transforms cannot also have a single subject filter'),
    (10151, 400, 'JSMirrorInvalidSubjectFilter', 'mirror transform source: {err}'),
    (10152, 400, 'JSMirrorOverlappingSubjectFilters', 'mirror subject filters can not overlap'),
    (10153, 400, 'JSConsumerInactiveThresholdExcess', 'consumer inactive threshold exceeds system limit of {limit}'),
    (10154, 400, 'JSMirrorInvalidTransformDestination', 'mirror transform: {err}'),
    (10155, 400, 'JSStreamTransformInvalidSource', 'stream transform source: {err}'),
    (10156, 400, 'JSStreamTransformInvalidDestination', 'stream transform: {err}'),
    (10157, 400, 'JSPedanticErrF', 'pedantic mode: {err}'),
    (10158, 409, 'JSStreamDuplicateMessageConflict', 'duplicate message id is in process'),
    (10159, 400, 'JSConsumerPriorityPolicyWithoutGroup', 'Setting PriorityPolicy requires at least one PriorityGroup to be set'),
    (10160, 400, 'JSConsumerInvalidPriorityGroupErr', 'Provided priority group does not exist for this consumer'),
    (10161, 400, 'JSConsumerEmptyGroupName', 'Group name cannot be an empty string'),
    (10162, 400, 'JSConsumerInvalidGroupNameErr', 'Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters'),
    (10163, 503, 'JSStreamExpectedLastSeqPerSubjectNotReady', 'expected last sequence per subject temporarily unavailable'),
    (10164, 400, 'JSStreamWrongLastSequenceConstantErr', 'wrong last sequence'),
    (10165, 400, 'JSMessageTTLInvalidErr', 'invalid per-message TTL'),
    (10166, 400, 'JSMessageTTLDisabledErr', 'per-message TTL is disabled'),
    (10167, 429, 'JSStreamTooManyRequests', 'too many requests'),
    (10178, 400, 'JSConsumerPushWithPriorityGroupErr', 'priority groups can not be used with push consumers'),
    (10194, 500, 'JSStreamOfflineReasonErrF', 'stream is offline: {err}'),
    (10195, 500, 'JSConsumerOfflineReasonErrF', 'consumer is offline: {err}'),
    (10202, 400, 'JSClusterServerMemberChangeInflightErr', 'cluster member change is in progress'),
)

ERRORS: dict[int, ErrorDef] = {r[0]: ErrorDef(*r) for r in _ROWS}
BY_NAME: dict[str, ErrorDef] = {d.name: d for d in ERRORS.values()}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class JSError(Exception):
    """A JetStream API error: raise it from a handler, the API layer turns it into JSON."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.err_code = err_code
        self.description = description

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "err_code": self.err_code, "description": self.description}

    def __repr__(self) -> str:
        return f"JSError({self.code}, {self.err_code}, {self.description!r})"


def js_err(err_code: int, **args: Any) -> JSError:
    """The error `err_code` with its template filled from `args`.

    Like nats-server's `Unless(err)`: when the value given for `err` is already a JSError it is
    returned unchanged, so wrapping an API error in a generic one keeps the specific code.
    """
    inner = args.get("err")
    if isinstance(inner, JSError):
        return inner
    d = ERRORS[err_code]
    desc = _PLACEHOLDER.sub(lambda m: str(args[m.group(1)]) if m.group(1) in args else m.group(0),
                            d.description)
    return JSError(d.code, d.err_code, desc)


# Names for the errors the stream layer raises most, so call sites read as words.
BAD_REQUEST = 10003
INVALID_JSON = 10025
MAX_CONSUMERS = 10026
MAX_STREAMS = 10027
MEMORY_RESOURCES_EXCEEDED = 10028
ACCOUNT_RESOURCES_EXCEEDED = 10002
INSUFFICIENT_RESOURCES = 10023
NO_MESSAGE_FOUND = 10037
NOT_EMPTY_REQUEST = 10038
NOT_ENABLED_FOR_ACCOUNT = 10039
SEQUENCE_NOT_FOUND = 10043
STORAGE_RESOURCES_EXCEEDED = 10047
STREAM_CREATE = 10049
STREAM_DELETE = 10050
STREAM_GENERAL = 10051
STREAM_INVALID_CONFIG = 10052
STREAM_LIMITS = 10053
STREAM_MSG_EXCEEDS_MAX = 10054
STREAM_MIRROR_NOT_UPDATABLE = 10055
STREAM_MISMATCH = 10056
STREAM_MSG_DELETE_FAILED = 10057
STREAM_NAME_EXIST = 10058
STREAM_NOT_FOUND = 10059
STREAM_NOT_MATCH = 10060
STREAM_SUBJECT_OVERLAP = 10065
STREAM_UPDATE = 10069
STREAM_WRONG_LAST_MSG_ID = 10070
STREAM_WRONG_LAST_SEQUENCE = 10071
STREAM_REPLICAS_NOT_SUPPORTED = 10074
NOT_ENABLED = 10076
STREAM_STORE_FAILED = 10077
STREAM_HEADER_EXCEEDS_MAX = 10097
STREAM_SEALED = 10109
STREAM_PURGE_FAILED = 10110
STREAM_ROLLUP_FAILED = 10111
STREAM_MAX_BYTES_REQUIRED = 10113
STREAM_MAX_STREAM_BYTES_EXCEEDED = 10122
STREAM_NAME_PATH_SEPARATORS = 10128
REPLICAS_NEGATIVE = 10133
STREAM_TRANSFORM_INVALID_SOURCE = 10155
STREAM_TRANSFORM_INVALID_DEST = 10156
PEDANTIC = 10157
MESSAGE_TTL_INVALID = 10165
MESSAGE_TTL_DISABLED = 10166
