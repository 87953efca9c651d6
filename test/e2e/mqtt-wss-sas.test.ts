import { MqttWs } from 'azure-iot-device-mqtt'
import { sasSuite } from './sdk-sas-suite.js'

sasSuite('MqttWs (secure WebSocket, 443)', MqttWs, 'wss')
