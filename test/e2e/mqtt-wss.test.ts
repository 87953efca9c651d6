import { MqttWs } from 'azure-iot-device-mqtt'
import { sdkSuite } from './sdk-suite.js'
import { x509Suite } from './x509-suite.js'

// All bind port 443 (MqttWs hard-codes it): one file, so they run one after the other
// (vitest runs files in parallel and the describes of a file in turn).
sdkSuite('MqttWs (secure WebSocket, 443)', MqttWs, 'wss', 'sas')
sdkSuite('MqttWs (secure WebSocket, 443)', MqttWs, 'wss', 'x509')
x509Suite('MqttWs (secure WebSocket, 443)', MqttWs, 'wss')
