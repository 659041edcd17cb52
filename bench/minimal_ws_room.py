"""
Baseline for bench/signalling.py: the smallest `websockets` server that
answers the same frames (connection, join, sendMessage) the naive way, one
json.dumps per recipient. Not part of wcs.
"""

import asyncio
import json
import sys

import websockets

rooms: dict[str, dict[str, object]] = {}


async def handle(ws):
    login = None
    joined = set()
    try:
        async for raw in ws:
            frame = json.loads(raw)
            name, data = frame["message"], frame.get("data") or [{}]
            if name == "connection":
                login = data[0]["custom"]["login"]
                await ws.send(json.dumps({"message": "getUserData", "data": [{}]}))
            elif name == "sendData":
                op, payload = data[0]["operationId"], data[0]["payload"]
                options = payload["options"]
                if payload["command"] == "join":
                    room = rooms.setdefault(options["name"], {})
                    for other in room.values():
                        await other.send(json.dumps({"message": "OnDataEvent", "data": [{"payload": {
                            "roomName": options["name"], "name": "JOINED", "info": login}}]}))
                    room[login] = ws
                    joined.add(options["name"])
                    await ws.send(json.dumps({"message": "DataStatusEvent", "data": [
                        {"operationId": op, "status": "ACCEPTED"}]}))
                    await ws.send(json.dumps({"message": "OnDataEvent", "data": [{"payload": {
                        "roomName": options["name"], "name": "STATE",
                        "info": [l for l in room if l != login]}}]}))
                elif payload["command"] == "sendMessage":
                    roomName = options["roomConfig"]["name"]
                    target = rooms.get(roomName, {}).get(options["to"])
                    if target is not None:
                        await target.send(json.dumps({"message": "OnDataEvent", "data": [{"payload": {
                            "roomName": roomName, "name": "MESSAGE",
                            "info": {"from": login, "text": options["text"]}}}]},
                            ensure_ascii=False))
                    await ws.send(json.dumps({"message": "DataStatusEvent", "data": [
                        {"operationId": op, "status": "ACCEPTED"}]}))
    except websockets.ConnectionClosed:
        pass
    finally:
        for roomName in joined:
            rooms.get(roomName, {}).pop(login, None)


async def main(port: int):
    async with websockets.serve(handle, "127.0.0.1", port, max_queue=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
