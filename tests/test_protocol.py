"""The JSON room protocol codec, without sockets."""

import json

import pytest

from wcs import protocol
from wcs.errors import ProtocolError
from wcs.messages import ServerMessage

LIMITS = protocol.Limits(roomName=16, login=8, chat=32)


def test_decode_frame():
    assert protocol.decodeFrame(b'{"message":"ping","data":[null]}') == ("ping", [None])
    assert protocol.decodeFrame('{"message":"x"}') == ("x", [])
    assert protocol.decodeFrame('{"message":"x","data":{"a":1}}') == ("x", [{"a": 1}])


@pytest.mark.parametrize("frame, problem", [
    (b"{bad", "malformed JSON"),
    (b"\xff\xfe", "malformed JSON"),
    (b"[1,2]", "JSON object"),
    (b'{"data":[]}', "'message' must be a non-empty string"),
    (b'{"message":5}', "'message' must be a non-empty string"),
])
def test_decode_frame_errors_name_the_problem(frame, problem):
    with pytest.raises(ProtocolError) as e:
        protocol.decodeFrame(frame)
    assert problem in e.value.info


def test_encode_keeps_unicode_as_utf8():
    text = "Привет 你好 🎉 <script>"
    frame = protocol.encodeFrame(ServerMessage("OnDataEvent", {"text": text}))
    assert text.encode("utf-8") in frame
    assert json.loads(frame) == {"message": "OnDataEvent", "data": [{"text": text}]}


def test_encoded_once_per_wire():
    calls = []
    message = ServerMessage("ping", None)

    def encode(m):
        calls.append(m)
        return b"x"

    assert message.encoded("w", encode) == message.encoded("w", encode) == b"x"
    assert len(calls) == 1


def test_send_data():
    request = protocol.parseSendData([{"operationId": "op1", "payload": {
        "command": "join", "options": {"name": "r", "record": True}}}])
    assert request.operationId == "op1" and request.command == "join"
    assert protocol.parseJoin(request.options, LIMITS) == protocol.Join("r", True)


@pytest.mark.parametrize("args, problem", [
    ([], "sendData: data[0] must be an object"),
    (["x"], "sendData: data[0] must be an object"),
    ([{"payload": {"command": "join"}}], "sendData.operationId"),
    ([{"operationId": "1"}], "sendData.payload must be an object"),
    ([{"operationId": "1", "payload": {"command": 3}}], "sendData.payload.command must be a string"),
    ([{"operationId": "1", "payload": {"command": "join", "options": []}}],
     "sendData.payload.options must be an object"),
])
def test_send_data_errors(args, problem):
    with pytest.raises(ProtocolError) as e:
        protocol.parseSendData(args)
    assert problem in e.value.info


@pytest.mark.parametrize("options, problem", [
    ({}, "join.name is required"),
    ({"name": ""}, "join.name must not be empty"),
    ({"name": 7}, "join.name must be a string"),
    ({"name": "x" * 17}, "join.name is longer than 16 characters"),
    ({"name": "r", "record": "yes"}, "join.record must be true or false"),
    ({"name": "\ud83d"}, "join.name is not valid Unicode"),
])
def test_join_errors(options, problem):
    with pytest.raises(ProtocolError) as e:
        protocol.parseJoin(options, LIMITS)
    assert e.value.info == problem


def test_chat():
    chat = protocol.parseChat({"roomConfig": {"name": "r"}, "to": "bob", "text": "你好"}, LIMITS)
    assert chat == protocol.Chat("r", "bob", "你好")
    with pytest.raises(ProtocolError, match="roomConfig"):
        protocol.parseChat({"to": "bob", "text": "x"}, LIMITS)
    with pytest.raises(ProtocolError, match="longer than 32"):
        protocol.parseChat({"roomConfig": {"name": "r"}, "to": "b", "text": "x" * 33}, LIMITS)


@pytest.mark.parametrize("room, to, text, problem", [
    ("", "b", "x", "sendMessage.roomConfig.name must not be empty"),
    ("r" * 17, "b", "x", "sendMessage.roomConfig.name is longer than 16 characters"),
    ("r", "", "x", "sendMessage.to must not be empty"),
    ("r", "b" * 9, "x", "sendMessage.to is longer than 8 characters"),
    ("r", "b", "x" * 33, "sendMessage.text is longer than 32 characters"),
    ("r" * 16, "b" * 8, "", None),
])
def test_chat_limits_are_stated_once(room, to, text, problem):
    """
    protocol.chatProblem is what parseChat refuses with, and what the chat
    fast path (wcs.commands) declines by: one statement of the limits.
    """
    assert protocol.chatProblem(room, to, text, LIMITS) == problem
    options = {"roomConfig": {"name": room}, "to": to, "text": text}
    if problem is None:
        assert protocol.parseChat(options, LIMITS) == protocol.Chat(room, to, text)
    else:
        with pytest.raises(ProtocolError) as e:
            protocol.parseChat(options, LIMITS)
        assert e.value.info == problem

def test_connection():
    connection = protocol.parseConnection([{"appKey": "roomApp", "custom": {"login": "alice"}}],
                                          LIMITS)
    assert (connection.appKey, connection.login) == ("roomApp", "alice")
    assert protocol.parseConnection([{}], LIMITS).login is None
    with pytest.raises(ProtocolError, match="connection.custom must be an object"):
        protocol.parseConnection([{"custom": "alice"}], LIMITS)


def test_stream_request():
    request = protocol.parseStream("publishStream", [{
        "mediaSessionId": "m1", "name": "r-alice-1a2b-screen", "custom": {"name": "r"},
        "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "hasAudio": False,
        "constraints": {"video": {"type": "screen"}, "audio": False}}], LIMITS, needSdp=True)
    assert request.published and request.room == "r" and request.isScreenShare
    assert not request.hasAudio and request.mediaProvider == "WebRTC"


@pytest.mark.parametrize("obj, problem", [
    ({"name": "s", "sdp": "v=0\r\nm=audio"}, "publishStream.mediaSessionId is required"),
    ({"mediaSessionId": "m", "sdp": "v=0\r\nm=audio"}, "publishStream.name is required"),
    ({"mediaSessionId": "m", "name": "s"}, "publishStream.sdp is required"),
    ({"mediaSessionId": "m", "name": "s", "sdp": "hello"}, "not an SDP offer"),
    ({"mediaSessionId": "m", "name": "s", "sdp": "m=", "custom": {"name": 1}},
     "publishStream.custom.name must be a string"),
])
def test_stream_request_errors(obj, problem):
    with pytest.raises(ProtocolError) as e:
        protocol.parseStream("publishStream", [obj], LIMITS, needSdp=True)
    assert problem in e.value.info


def _nested(depth: int) -> bytes:
    return b'{"message":"x","data":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_nesting_up_to_the_limit_is_decoded():
    assert protocol.decodeFrame(_nested(protocol.MAX_DEPTH))[0] == "x"
    # Brackets inside strings and escaped quotes are text, not nesting.
    text = '[{\\"' * 100
    frame = json.dumps({"message": "x", "data": [text]}).encode()
    assert protocol.decodeFrame(frame) == ("x", [text])


@pytest.mark.parametrize("payload", [
    _nested(protocol.MAX_DEPTH + 1),
    _nested(1000),  # raised RecursionError out of decodeFrame before the limit
    b"[" * 65536,
    b'{"message":"x","data":' + b'{"a":' * 5000 + b"1" + b"}" * 5001,
])
def test_deep_nesting_is_refused_before_decoding(payload):
    with pytest.raises(ProtocolError) as e:
        protocol.decodeFrame(payload)
    assert e.value.info == f"JSON nested deeper than {protocol.MAX_DEPTH} levels"
    with pytest.raises(ProtocolError):
        protocol.decodeFrame(payload.decode())  # the same for text


def test_nesting_limit_is_a_parameter():
    assert protocol.decodeFrame(_nested(3), maxDepth=3)[0] == "x"
    with pytest.raises(ProtocolError, match="deeper than 2 levels"):
        protocol.decodeFrame(_nested(3), maxDepth=2)


def test_encodeFrame_is_compact_json_with_text_as_utf8():
    from wcs.messages import encodeFrame
    args = [{"text": 'é "quoted" \u2028 \x00', "n": [1, -2.5, 1e300, None, True, False]}, "x"]
    encoded = encodeFrame(ServerMessage("OnDataEvent", *args))
    assert encoded == json.dumps({"message": "OnDataEvent", "data": args}, ensure_ascii=False,
                                 separators=(",", ":")).encode("utf-8")
    with pytest.raises(TypeError):
        encodeFrame(ServerMessage("x", object()))


TRICKY = ["", "plain", 'é "quoted" \\ back', "\u2028\u2029 \x00\x1f\x7f",
          "emoji \U0001f600", "%s %d %%", "{}[],:"]


def _generic(message: ServerMessage) -> bytes:
    from wcs.messages import encodeFrame
    return encodeFrame(ServerMessage(message.name, *message.args))


@pytest.mark.parametrize("text", TRICKY)
def test_chat_event_template_is_the_generic_encoding(text):
    """The template of a chat delivery gives the bytes the generic encoder gives."""
    from wcs.messages import encodeFrame
    from wcs.room.events import chatEvent, roomEvent
    message = chatEvent("room " + text, text + " from", text)
    assert message.jsonText is not None
    assert encodeFrame(message) == _generic(message)
    assert message.args == roomEvent("room " + text, "MESSAGE",
                                     {"from": text + " from", "text": text}).args


@pytest.mark.parametrize("operationId", TRICKY[1:] + [0, 7, -3, 2**70])
def test_data_status_template_is_the_generic_encoding(operationId):
    from wcs.messages import encodeFrame
    from wcs.room.events import ACCEPTED, dataStatus
    message = dataStatus(operationId, ACCEPTED)
    assert message.jsonText is not None
    assert encodeFrame(message) == _generic(message)
    assert json.loads(encodeFrame(message))["data"][0]["operationId"] == operationId \
        or operationId != operationId


def test_templates_refuse_a_lone_surrogate_as_the_encoder_does():
    """(protocol._text refuses such text before it gets here.)"""
    from wcs.messages import encodeFrame
    from wcs.room.events import ACCEPTED, chatEvent, dataStatus
    for message in (chatEvent("r", "a", "\ud800"), dataStatus("\ud800", ACCEPTED)):
        with pytest.raises(UnicodeEncodeError):
            encodeFrame(message)
        with pytest.raises(UnicodeEncodeError):
            _generic(message)


def test_data_status_without_template():
    """A failure's info, or an operationId of another type, takes the generic path."""
    from wcs.messages import encodeFrame
    from wcs.room.events import FAILED, dataStatus
    failed = dataStatus("op", FAILED, "no such room", refusal="INVALID")
    assert failed.jsonText is None and failed.refusal == "INVALID"
    assert json.loads(encodeFrame(failed))["data"] == [
        {"operationId": "op", "status": "FAILED", "info": "no such room"}]
    assert dataStatus(True, FAILED).jsonText is None


def test_decode_takes_utf8_only():
    """A text frame is UTF-8: invalid UTF-8 and a BOM are malformed JSON."""
    assert protocol.decodeFrame('{"message":"x","data":["é"]}'.encode()) == ("x", ["é"])
    with pytest.raises(ProtocolError, match="malformed JSON"):
        protocol.decodeFrame(b'{"message":"x","data":["\xff"]}')
    with pytest.raises(ProtocolError, match="malformed JSON"):
        protocol.decodeFrame(b'\xef\xbb\xbf{"message":"x"}')
    with pytest.raises(ProtocolError, match="malformed JSON"):
        protocol.decodeFrame('{"message":"x"}'.encode("utf-16"))


def _chatFrameJSON(text="hi", to="bob", room="r1", operationId="op-1", **dumps) -> bytes:
    return json.dumps({"message": "sendData", "data": [{
        "operationId": operationId, "payload": {"command": "sendMessage", "options": {
            "roomConfig": {"name": room}, "to": to, "text": text}}}]}, **dumps).encode("utf-8")


@pytest.mark.parametrize("payload", [
    _chatFrameJSON(),  # json.dumps: ", " and ": "
    _chatFrameJSON(separators=(",", ":")),  # the SDK's JSON.stringify
    _chatFrameJSON(text="", separators=(",", ":")),
    _chatFrameJSON(text="héllo 🎉 %s {} [] , : ' \x7f", ensure_ascii=False),
    _chatFrameJSON(indent="\t"),
    b' \r\n' + _chatFrameJSON() + b'\n',
])
def test_chat_frame_reads_what_the_generic_path_reads(payload):
    from wcs.messages import chatFrame, decodeFrame
    name, args = decodeFrame(payload)
    request = protocol.parseSendData(args)
    chat = protocol.parseChat(request.options, protocol.Limits())
    assert (name, request.command) == ("sendData", "sendMessage")
    assert chatFrame(payload) == (request.operationId, chat.room, chat.to, chat.text)


@pytest.mark.parametrize("payload", [
    _chatFrameJSON(text='say "hi"'),  # escapes: JSON decoding needed
    _chatFrameJSON(text="é"),  # \u00e9
    _chatFrameJSON(text="a\\b"),
    _chatFrameJSON(operationId=""),  # refused by parseSendData
    _chatFrameJSON(text="<>").replace(b"<>", b"\xed\xa0\xbd"),  # an encoded surrogate
    _chatFrameJSON(text="<>").replace(b"<>", b"\xff"),  # not UTF-8
    _chatFrameJSON(text="<>").replace(b"<>", b"a\x01b"),  # a raw control character
    _chatFrameJSON().replace(b'"op-1"', b"7"),  # an integer operationId
    _chatFrameJSON().replace(b'"to": "bob"', b'"to": "bob", "to": "eve"'),
    _chatFrameJSON().replace(b'"name": "r1"', b'"name": "r1", "pin": "1"'),
    _chatFrameJSON().replace(b'"sendMessage"', b'"join"'),
    _chatFrameJSON().replace(b'"text"', b'"texts"'),
    _chatFrameJSON() + b"x",
    _chatFrameJSON()[:-1],
    b'{"message": "sendData", "data": {"operationId": "1"}}',
])
def test_chat_frame_declines_anything_unusual(payload):
    from wcs.messages import chatFrame
    assert chatFrame(payload) is None


def test_template_messages_build_their_args_once_and_only_when_read():
    from wcs.messages import TemplateMessage
    from wcs.room.events import ACCEPTED, chatEvent, dataStatus
    made = []
    message = TemplateMessage("X", '{"message":"X","data":[1]}', lambda v: made.append(v) or [v], 1)
    assert not made
    assert message.args is message.args == [1] and made == [1]
    message.args = [2]
    assert message.args == [2]
    status = dataStatus("op", ACCEPTED, refusal="INVALID")
    assert status.refusal == "INVALID" and isinstance(status, TemplateMessage)
    assert isinstance(chatEvent("r", "a", "t"), TemplateMessage)
